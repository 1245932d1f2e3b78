#!/usr/bin/env bash
# Publishes a release to one registry: the multi-platform image index, its FIPS variant, and the
# Helm chart as an OCI artifact.
#
#   infra/release.sh REGISTRY [VERSION]      # e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com
#
#   REGISTRY/ocync:VERSION           linux/amd64 + linux/arm64 index   (infra/image.sh)
#   REGISTRY/ocync:VERSION-fips      the FIPS variant                  (infra/image.sh --fips; FIPS=0 skips it)
#   REGISTRY/charts/ocync:VERSION    the chart (version and appVersion VERSION, image.repository
#                                    REGISTRY/ocync), so that
#       helm install ocync oci://REGISTRY/charts/ocync --version VERSION
#   runs the image published with it. VERSION defaults to Cargo.toml's package version; another
#   value (0.1.0-rc.1) tags the same build. A leading http:// on REGISTRY means plain HTTP (a
#   local registry); otherwise TLS (self-signed is accepted for the image push, as image.sh does).
#   PROFILE (see infra/image.sh) is passed on: the tests publish their cheap `image-test` builds.
#
# Credentials: buildah and Helm read the usual places (`buildah login` / `helm registry login`,
# ${XDG_RUNTIME_DIR}/containers/auth.json, ~/.config/helm/registry/config.json); for ECR:
#   aws ecr get-login-password | buildah login -u AWS --password-stdin REGISTRY
# The chart is pushed with the Helm SDK from the repository's .venv (helm-python-sdk, .ci/run).
# Prints one pushed reference per line on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 REGISTRY [VERSION]" >&2; exit 2; }
registry=${1%/}
plain_http=()
if [[ $registry == http://* ]]; then
  registry=${registry#http://}
  plain_http=(--plain-http)
fi
crate_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
version=${2:-$crate_version}
# Helm and OCI tags both accept SemVer without build metadata (`+` is not a tag character).
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] \
  || { echo "version '$version' is not SemVer (MAJOR.MINOR.PATCH[-PRERELEASE])" >&2; exit 2; }
python=.venv/bin/python
[ -x "$python" ] || { echo "$python missing: python3 -m venv .venv && .venv/bin/pip install helm-python-sdk (or run .ci/run)" >&2; exit 1; }

start=$SECONDS
index=$(infra/image.sh "$registry/ocync:$version")
echo "$registry/ocync:$version@$index"
if [ "${FIPS:-1}" != 0 ]; then
  fips=$(infra/image.sh --fips "$registry/ocync:$version")
  echo "$registry/ocync:$version-fips@$fips"
fi
"$python" infra/chart.py charts/ocync "oci://$registry/charts" "$version" "$registry/ocync" "${plain_http[@]}"
echo "release $version published to $registry in $((SECONDS - start)) s" >&2
