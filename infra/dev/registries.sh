#!/usr/bin/env bash
# Start local CNCF distribution registries on 127.0.0.1 for development.
#
#   eval "$(infra/dev/registries.sh start 5001 5002)"   # prints OCYNC_DEV_PIDS=… and the data dir
#   infra/dev/registries.sh stop "$OCYNC_DEV_PIDS"
#
# Each registry keeps its storage under a temp dir and logs requests to <dir>/<port>.log.
set -euo pipefail

command -v docker-registry >/dev/null || {
  echo "docker-registry is not installed: apt-get install -y docker-registry" >&2
  exit 1
}

case "${1:-}" in
start)
  shift
  dir=$(mktemp -d -t ocync-dev.XXXXXX)
  pids=()
  for port in "$@"; do
    mkdir -p "$dir/$port"
    cat >"$dir/$port.yml" <<YAML
version: 0.1
log: { level: info, formatter: text, accesslog: { disabled: false } }
storage: { filesystem: { rootdirectory: $dir/$port }, delete: { enabled: true } }
http: { addr: 127.0.0.1:$port, secret: ocync-dev }
YAML
    docker-registry serve "$dir/$port.yml" >"$dir/$port.log" 2>&1 &
    pids+=($!)
  done
  for port in "$@"; do
    for _ in $(seq 100); do
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
      sleep 0.1
    done
  done
  echo "OCYNC_DEV_PIDS='${pids[*]}'"
  echo "OCYNC_DEV_DIR='$dir'"
  ;;
stop)
  shift
  for pid in $*; do kill "$pid" 2>/dev/null || true; done
  ;;
*)
  echo "usage: $0 start PORT... | stop PIDS" >&2
  exit 2
  ;;
esac
