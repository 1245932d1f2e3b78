#!/usr/bin/env bash
# Builds the ocync container image without a daemon and without pulling any base image, and pushes
# it:  infra/image.sh REGISTRY/REPO:TAG   (plain HTTP or self-signed registries are fine)
#
# infra/Dockerfile's builder stage needs rust:… from a registry; here the builder stage's cargo
# command runs on the host instead (same command, same musl target), its output tree (/out) goes
# into a temp dir, and buildah builds only the runtime stage with that dir as the `builder` stage
# (`--build-context builder=DIR`). Prints the pushed manifest digest on stdout.
#
# Needs (Debian): apt-get install -y buildah musl-tools ca-certificates
#                 rustup target add x86_64-unknown-linux-musl
# Run as root (CI); buildah uses vfs storage in a temp dir and chroot isolation, so no daemon,
# no overlay mount and nothing left behind.
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -eq 1 ] || { echo "usage: $0 REGISTRY/REPO:TAG" >&2; exit 2; }
image=$1
for tool in buildah:buildah musl-gcc:musl-tools; do
  command -v "${tool%%:*}" >/dev/null || { echo "${tool%%:*} missing: apt-get install -y ${tool#*:}" >&2; exit 1; }
done

# The builder stage's cargo command, taken from the Dockerfile so the two cannot drift apart.
build=$(sed -n 's/^RUN \(cargo build .*\)$/\1/p' infra/Dockerfile)
target=$(grep -oE -- '--target [^ ]+' <<<"$build" | cut -d' ' -f2)
[ -n "$target" ] || { echo "no 'RUN cargo build … --target …' line in infra/Dockerfile" >&2; exit 1; }
rustup target list --installed 2>/dev/null | grep -qx "$target" \
  || { echo "Rust target $target missing: rustup target add $target" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. The builder stage, on the host. cc-rs picks musl-gcc for aws-lc-sys's C code (as in the
#    builder stage, which installs the same musl-tools).
echo "+ $build" >&2
start=$SECONDS
$build >&2
echo "static build: $((SECONDS - start)) s" >&2

# 2. What the builder stage leaves in /out.
out=$work/builder/out
mkdir -p "$out/usr/local/bin" "$out/etc/ssl/certs" "$work/context"
cp "${CARGO_TARGET_DIR:-target}/$target/release/ocync" "$out/usr/local/bin/ocync"
cp /etc/ssl/certs/ca-certificates.crt "$out/etc/ssl/certs/ca-certificates.crt"

# 3. The runtime stage only (it copies nothing from the main context, so that stays empty), then
#    push. Storage lives in the temp dir: parallel runs do not collide, nothing accumulates.
storage=(--root "$work/storage" --runroot "$work/run" --storage-driver vfs)
buildah "${storage[@]}" bud --isolation chroot --quiet \
  --build-context builder="$work/builder" -f infra/Dockerfile --target runtime \
  -t ocync:build "$work/context" >&2
buildah "${storage[@]}" push --tls-verify=false --digestfile "$work/digest" ocync:build "docker://$image" >&2
echo "pushed $image@$(cat "$work/digest")" >&2
cat "$work/digest"; echo
