#!/usr/bin/env bash
# The full test suite: formatting, supply chain (cargo-deny), lints, unit and integration tests
# (debug build).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --check
# Advisories, licences, bans and sources of the dependency tree (deny.toml); seconds.
infra/deny/check.sh
cargo clippy --all-targets --all-features --locked -- -D warnings
cargo test --locked --all-features

# The benchmark on a tiny corpus with the debug build, so it cannot rot (seconds).
infra/bench/run.sh --tiny
