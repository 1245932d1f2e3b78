#!/usr/bin/env bash
# The benchmark: ocync next to `skopeo sync --all --preserve-digests --keep-going` on the same
# local corpus (see run.py), and N ocync processes under a shared quota (see quota.py). Builds
# release binaries first.
#
#   infra/bench/run.sh [--runs N] [--scenario cold|warm|partial|fan-out|big|quota]... [--json-out FILE]
#                      [--scale 4,8,16] [--workdir DIR]
#                      [--workers 1,3,6,12] [--quota 5] [--quota-on manifests|uploads]...
#   infra/bench/run.sh --tiny      # seconds; what CI runs so the benchmark cannot rot
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "${1:-}" = "--tiny" ]; then
  # The debug build the tests already made: a smoke run, not a measurement.
  shift
  cargo build --quiet --features testing --bins
  exec python3 infra/bench/run.py --profile debug --runs 1 --repositories 2 --tags 2 --base-mib 1 --changed 1 --big-mib 8 --plan-mappings 20 \
    --workers 2 --quota-repositories 4 --quota-on manifests "$@"
fi
cargo build --release --quiet --features testing,lambda --bins
# The container image's binary too (static musl: its allocator differs), when the target is there.
if rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl && command -v musl-gcc >/dev/null; then
  cargo build --release --quiet --locked --target x86_64-unknown-linux-musl --bin ocync
  exec python3 infra/bench/run.py --musl target/x86_64-unknown-linux-musl/release/ocync "$@"
fi
exec python3 infra/bench/run.py "$@"
