#!/usr/bin/env bash
# The main job against a local default: two local registries, a seeded multi-arch image,
# copied with ocync, then what landed and its digests.
#
#   infra/dev/demo.sh            (ports 5001 and 5002 unless SOURCE_PORT / TARGET_PORT say otherwise)
set -euo pipefail
cd "$(dirname "$0")/../.."

source_port=${SOURCE_PORT:-5001}
target_port=${TARGET_PORT:-5002}

cargo build --quiet --bins
bin=target/debug

eval "$(infra/dev/registries.sh start "$source_port" "$target_port")"
trap 'infra/dev/registries.sh stop "$OCYNC_DEV_PIDS"; rm -rf "$OCYNC_DEV_DIR"' EXIT

src="http://127.0.0.1:$source_port"
dst="http://127.0.0.1:$target_port"

echo "== seeding a 2-platform OCI index into $src/demo/app:1.0 (generated locally, no internet)"
"$bin/ocync-testdata" "$src/demo/app:1.0" index --platforms 2 --base-mib 4 --seed 1

echo "== ocync copy"
"$bin/ocync" copy "$src/demo/app:1.0" "$dst/mirror/app:1.0"

echo "== second run (nothing to do: HEAD requests only)"
"$bin/ocync" copy "$src/demo/app:1.0" "$dst/mirror/app:1.0"

echo "== what landed"
for side in "$src/demo/app:1.0" "$dst/mirror/app:1.0"; do
  host=${side#http://}
  digest=$(curl -fsS -I -H 'Accept: application/vnd.oci.image.index.v1+json' \
    "http://${host%%/*}/v2/$(echo "${host#*/}" | cut -d: -f1)/manifests/1.0" | tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}')
  echo "$side  $digest"
done
if command -v skopeo >/dev/null; then
  echo "== skopeo's view of the mirror"
  skopeo inspect --raw --tls-verify=false "docker://127.0.0.1:$target_port/mirror/app:1.0"
  echo
fi
