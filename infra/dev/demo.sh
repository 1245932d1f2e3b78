#!/usr/bin/env bash
# The main job against a local default: three local registries (one source, two mirrors),
# a few multi-arch tags seeded with ocync's own test-data builder, then `ocync sync` twice
# (cold, then warm) with the requests each run cost, and the digests that landed.
#
#   infra/dev/demo.sh     (ports 5001-5003 unless SOURCE_PORT / MIRROR_PORTS say otherwise)
set -euo pipefail
cd "$(dirname "$0")/../.."

source_port=${SOURCE_PORT:-5001}
read -r -a mirror_ports <<<"${MIRROR_PORTS:-5002 5003}"

cargo build --quiet --features testing --bins
bin=target/debug

eval "$(infra/dev/registries.sh start "$source_port" "${mirror_ports[@]}")"
trap 'infra/dev/registries.sh stop "$OCYNC_DEV_PIDS"; rm -rf "$OCYNC_DEV_DIR"' EXIT
src="http://127.0.0.1:$source_port"

echo "== seeding $src (2-platform OCI indexes sharing a 4 MiB base layer; generated locally)"
seed=1
for tag in 1.0.0 1.1.0 1.2.0 2.0.0-rc1 latest; do
  "$bin/ocync-testdata" push "$src/demo/app:$tag" index --platforms 2 --base-mib 4 --seed $((seed++)) >/dev/null
done
"$bin/ocync-testdata" push "$src/demo/chart:0.3.0" helm --seed 3 >/dev/null

config="$OCYNC_DEV_DIR/ocync.yaml"
cat >"$config" <<YAML
registries:
  upstream: { url: "$src" }
  mirror-a: { url: "http://127.0.0.1:${mirror_ports[0]}" }
  mirror-b: { url: "http://127.0.0.1:${mirror_ports[1]}" }
target_groups:
  mirrors: [mirror-a, mirror-b]
defaults:
  source: upstream
  targets: mirrors
  tags: { sort: semver, latest: 2 }     # newest two releases; the rc and 'latest' are dropped
mappings:
  - from: demo/app
    to: mirror/app
  - from: demo/chart
    to: charts/demo
YAML
echo "== config"; cat "$config"

requests() { # METHOD-kind counts from the registries' access logs since the marker
  for port in "$source_port" "${mirror_ports[@]}"; do
    printf '  %s: ' "$port"
    tail -n +"$(($(cat "$OCYNC_DEV_DIR/$port.mark") + 1))" "$OCYNC_DEV_DIR/$port.log" |
      grep -o '"[A-Z]* /v2/[^ ]*' | sed -E 's/"([A-Z]+) .*\/(manifests|blobs|tags|referrers)\/.*/\1 \2/' | sort | uniq -c | tr -s ' ' | paste -sd, -
  done
}
mark() { for port in "$source_port" "${mirror_ports[@]}"; do wc -l <"$OCYNC_DEV_DIR/$port.log" >"$OCYNC_DEV_DIR/$port.mark"; done; }

echo "== ocync plan (dry run)"
"$bin/ocync" plan --config "$config"
mark
echo "== ocync sync (cold)"
"$bin/ocync" sync --config "$config" 2>/dev/null
echo "requests per registry:"; requests
mark
echo "== ocync sync (warm: nothing changed: tag lists, HEADs and one referrers-API probe)"
"$bin/ocync" sync --config "$config" 2>/dev/null
echo "requests per registry:"; requests

echo "== what landed (digest at the source, then at each mirror)"
digest() { curl -fsS -I -H 'Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json' "$1" |
  tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}'; }
for pair in demo/app:mirror/app:1.2.0 demo/app:mirror/app:1.1.0 demo/chart:charts/demo:0.3.0; do
  IFS=: read -r from to tag <<<"$pair"
  echo "$from:$tag  $(digest "$src/v2/$from/manifests/$tag")"
  for port in "${mirror_ports[@]}"; do
    echo "  127.0.0.1:$port/$to:$tag  $(digest "http://127.0.0.1:$port/v2/$to/manifests/$tag")"
  done
done
