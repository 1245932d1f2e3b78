#!/usr/bin/env bash
# One image with one big layer, copied between two local registries: `ocync copy` next to a
# plain `curl GET | curl PUT` pipe of the same blob (the floor for moving those bytes).
# Prints wall time and peak RSS.
#
#   infra/bench/big-layer.sh [SIZE_MIB]      (default 1024)
set -euo pipefail
cd "$(dirname "$0")/../.."

size_mib=${1:-1024}
source_port=${SOURCE_PORT:-5201}
target_port=${TARGET_PORT:-5202}
command -v /usr/bin/time >/dev/null || { echo "GNU time is missing: apt-get install -y time" >&2; exit 1; }

cargo build --release --quiet --features testing --bins
bin=target/release

eval "$(infra/dev/registries.sh start "$source_port" "$target_port")"
trap 'infra/dev/registries.sh stop "$OCYNC_DEV_PIDS"; rm -rf "$OCYNC_DEV_DIR"' EXIT
src=127.0.0.1:$source_port
dst=127.0.0.1:$target_port

echo "seeding a ${size_mib} MiB layer..." >&2
"$bin/ocync-testdata" push "http://$src/big/app:v1" image --base-mib "$size_mib" >/dev/null

# The layer's digest, from the manifest (second blob after the config).
manifest=$(curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$src/v2/big/app/manifests/v1")
layer=$(echo "$manifest" | tr -d ' \n' | sed 's/.*"layers":\[{[^}]*"digest":"\([^"]*\)".*/\1/')

# curl pipe: GET the blob, stream it into a monolithic PUT at the target.
location=$(curl -fsS -o /dev/null -D - -X POST "http://$dst/v2/curl/app/blobs/uploads/" | tr -d '\r' | awk -F': ' 'tolower($1)=="location"{print $2}')
case "$location" in http*) ;; *) location="http://$dst$location" ;; esac
start=$(date +%s.%N)
curl -fsS "http://$src/v2/big/app/blobs/$layer" |
  curl -fsS -X PUT -H 'Content-Type: application/octet-stream' -T - "$location&digest=$layer" >/dev/null
curl_wall=$(echo "$(date +%s.%N) - $start" | bc)

# ocync copy of the whole image (config, layer, manifest).
/usr/bin/time -f '%e %M' -o /tmp/ocync-big-layer.time "$bin/ocync" copy "http://$src/big/app:v1" "http://$dst/ocync/app:v1" >/dev/null
read -r ocync_wall ocync_rss_kb </tmp/ocync-big-layer.time

same=$(curl -fsS -I -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$dst/v2/ocync/app/manifests/v1" |
  tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}')
expected=$(curl -fsS -I -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$src/v2/big/app/manifests/v1" |
  tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}')
[ "$same" = "$expected" ] || { echo "digest mismatch: $same != $expected" >&2; exit 1; }

printf '| layer | curl GET\\|PUT wall | ocync wall | ratio | ocync peak RSS |\n|---|---|---|---|---|\n'
printf '| %s MiB | %.2f s | %.2f s | %.2f | %.1f MB |\n' "$size_mib" "$curl_wall" "$ocync_wall" \
  "$(echo "$ocync_wall / $curl_wall" | bc -l)" "$(echo "$ocync_rss_kb / 1024" | bc -l)"
