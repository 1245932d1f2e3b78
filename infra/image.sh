#!/usr/bin/env bash
# Builds the ocync container image for linux/amd64 and linux/arm64 without a daemon and without
# pulling any base image, and pushes both under one multi-platform index:
#
#   infra/image.sh REGISTRY/REPO:TAG          # the index at TAG
#   infra/image.sh --fips REGISTRY/REPO:TAG   # the FIPS variant at TAG-fips (see README "FIPS builds")
#
# Plain HTTP or self-signed registries are fine. Prints the pushed index digest on stdout.
#   PLATFORMS="linux/amd64"  limits the platforms (default: both; the FIPS variant: linux/amd64)
#   PROFILE=image-test       builds with that Cargo profile instead of `--release` (the tests use
#                            Cargo.toml's cheap `image-test` profile: minutes less per platform)
#
# infra/Dockerfile's builder stage needs rust:… from a registry; here the builder stage's cargo
# command runs on the host instead (same command, the platform's musl target), its output tree
# (/out) goes into a temp dir, and buildah builds only the runtime stage per platform with that
# dir as the `builder` stage (`--build-context builder=DIR`, `--platform`; the runtime stage runs
# nothing, so no emulation is needed) and adds it to one manifest list, pushed as an OCI index.
#
# The host's target builds with cargo (musl-gcc compiles aws-lc's C code); the other target is
# cross-compiled with cargo-zigbuild, zig serving as the C compiler and linker for musl. Both
# variants share one target dir (CARGO_TARGET_DIR, default target/): what does not depend on the
# crypto module (most crates) is compiled once for both.
#
# Needs (Debian): apt-get install -y buildah musl-tools ca-certificates
#                 rustup target add x86_64-unknown-linux-musl aarch64-unknown-linux-musl
#                 .venv/bin/pip install cargo-zigbuild ziglang       (both from PyPI, .ci/run)
#   --fips also:  apt-get install -y cmake golang-go linux-libc-dev  (aws-lc-fips-sys builds with them)
# Run as root (CI); buildah uses vfs storage in a temp dir and chroot isolation, so no daemon,
# no overlay mount and nothing left behind.
set -euo pipefail
cd "$(dirname "$0")/.."

fips=""
[ "${1:-}" = "--fips" ] && { fips=1; shift; }
[ $# -eq 1 ] || { echo "usage: $0 [--fips] REGISTRY/REPO:TAG" >&2; exit 2; }
image=$1
[ -n "$fips" ] && image="$image-fips"
platforms=${PLATFORMS:-$([ -n "$fips" ] && echo linux/amd64 || echo "linux/amd64 linux/arm64")}

# cargo-zigbuild and zig come from the repository's venv when it has them.
[ -d .venv/bin ] && PATH="$PWD/.venv/bin:$PATH"
need() { command -v "$1" >/dev/null || { echo "$1 missing: $2" >&2; exit 1; }; }
need buildah "apt-get install -y buildah"
need musl-gcc "apt-get install -y musl-tools"
if [ -n "$fips" ]; then
  need cmake "apt-get install -y cmake"
  need go "apt-get install -y golang-go"
fi

# The builder stage's cargo command, taken from the Dockerfile so the two cannot drift apart.
build=$(sed -n 's/^RUN \(cargo build .*\)$/\1/p' infra/Dockerfile)
dockerfile_target=$(grep -oE -- '--target [^ ]+' <<<"$build" | cut -d' ' -f2)
[ -n "$dockerfile_target" ] || { echo "no 'RUN cargo build … --target …' line in infra/Dockerfile" >&2; exit 1; }
[[ $build == *" --release "* ]] || { echo "infra/Dockerfile's cargo build line lost --release" >&2; exit 1; }
[ -n "$fips" ] && build="$build --features fips"
# Cargo's output directory of a profile: `dev` writes to debug/, every other profile to its name.
profile=${PROFILE:-release}
build=${build/ --release / --profile $profile }
profile_dir=$([ "$profile" = dev ] && echo debug || echo "$profile")
target_dir=${CARGO_TARGET_DIR:-target}
host_arch=$(uname -m)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Both variants write the same output path (TARGET/<triple>/<profile>/ocync): concurrent runs on
# one target dir (the tests) hold this lock from their build to their copy of the binary.
mkdir -p "$target_dir"
exec 9>"$target_dir/image.sh.lock"
storage=(--root "$work/storage" --runroot "$work/run" --storage-driver vfs)
mkdir -p "$work/context"

for platform in $platforms; do
  case $platform in
    linux/amd64) arch=x86_64 ;;
    linux/arm64) arch=aarch64 ;;
    *) echo "unsupported platform $platform (linux/amd64, linux/arm64)" >&2; exit 2 ;;
  esac
  target=${dockerfile_target/#x86_64/$arch}
  rustup target list --installed 2>/dev/null | grep -qx "$target" \
    || { echo "Rust target $target missing: rustup target add $target" >&2; exit 1; }
  command=${build//$dockerfile_target/$target}
  if [ "$arch" != "$host_arch" ]; then
    [ -n "$fips" ] && { echo "the FIPS variant builds only for the host's platform ($host_arch)" >&2; exit 2; }
    need cargo-zigbuild ".venv/bin/pip install cargo-zigbuild ziglang (or run .ci/run)"
    command=${command/cargo build/cargo zigbuild}
  fi

  if [ "$arch" = "$host_arch" ]; then
    # musl-gcc's sysroot holds no Linux UAPI headers and AWS-LC's FIPS build includes
    # <linux/random.h>: give it the kernel's (linux-libc-dev) and nothing else of glibc's, as
    # Alpine's linux-headers does. Set for both variants, so switching between them does not
    # rebuild aws-lc-sys (its build script reruns when these flags change); a fixed path, so the
    # C builds stay cached between runs.
    mkdir -p "$target_dir/musl-linux-headers"
    headers=$(realpath "$target_dir/musl-linux-headers")
    for dir in linux asm-generic "$(gcc -print-multiarch)/asm"; do
      [ -d "/usr/include/$dir" ] || { echo "/usr/include/$dir missing: apt-get install -y linux-libc-dev" >&2; exit 1; }
      ln -sfn "/usr/include/$dir" "$headers/$(basename "$dir")"
    done
    export "CFLAGS_${target//-/_}=-isystem $headers"
  fi

  # 1. The builder stage, on the host.
  flock 9
  echo "+ CARGO_TARGET_DIR=$target_dir $command" >&2
  start=$SECONDS
  CARGO_TARGET_DIR=$target_dir $command >&2
  echo "$platform build ($profile${fips:+, fips}): $((SECONDS - start)) s" >&2

  # 2. What the builder stage leaves in /out.
  out=$work/$arch/builder/out
  mkdir -p "$out/usr/local/bin" "$out/etc/ssl/certs"
  cp "$target_dir/$target/$profile_dir/ocync" "$out/usr/local/bin/ocync"
  flock -u 9
  cp /etc/ssl/certs/ca-certificates.crt "$out/etc/ssl/certs/ca-certificates.crt"

  # 3. The runtime stage only, for this platform, into the list. Storage lives in the temp dir:
  #    parallel runs do not collide, nothing accumulates.
  buildah "${storage[@]}" bud --isolation chroot --quiet --platform "$platform" --format oci \
    --build-context builder="$work/$arch/builder" -f infra/Dockerfile --target runtime \
    --manifest ocync:index "$work/context" >&2
done

buildah "${storage[@]}" manifest push --all --format oci --tls-verify=false --digestfile "$work/digest" \
  ocync:index "docker://$image" >&2
echo "pushed $image@$(cat "$work/digest") ($platforms)" >&2
cat "$work/digest"; echo
