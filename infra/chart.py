"""Packages charts/ocync for a release and pushes it to an OCI registry with the Helm SDK
(PyPI `helm-python-sdk`, in the repository's .venv; no `helm` binary needed). Called by
infra/release.sh:

    chart.py CHART_DIR oci://REGISTRY/charts VERSION IMAGE_REPOSITORY [--plain-http]

The packaged chart gets `version` and `appVersion` VERSION, and `image.repository`
IMAGE_REPOSITORY as its default, so `helm install ocync oci://REGISTRY/charts/ocync --version
VERSION` runs the image published with it without any --set. The working tree is not changed
(the chart is staged in a temp dir). Prints the pushed reference (`REGISTRY/charts/ocync:VERSION`) on stdout.
"""

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import helm_python as helm

# The one line of values.yaml that names the default image repository.
REPOSITORY_LINE = "  repository: ocync\n"


def stage(chart_dir, staging, image_repository):
    """A copy of the chart whose default image.repository is the published image."""
    staged = Path(staging) / Path(chart_dir).name
    shutil.copytree(chart_dir, staged)
    values = staged / "values.yaml"
    text = values.read_text(encoding="utf-8")
    if text.count(REPOSITORY_LINE) != 1:
        raise SystemExit(f"{values}: expected exactly one line {REPOSITORY_LINE.strip()!r} under image:")
    values.write_text(text.replace(REPOSITORY_LINE, f"  repository: {image_repository}\n"), encoding="utf-8")
    return staged


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chart_dir")
    parser.add_argument("remote", help="oci://REGISTRY/charts")
    parser.add_argument("version")
    parser.add_argument("image_repository")
    parser.add_argument("--plain-http", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as staging:
        try:
            staged = stage(args.chart_dir, staging, args.image_repository)
            report = helm.lint(str(staged), {}, strict=True)
            problems = [m for m in report.get("messages") or [] if m.get("severity", 0) >= 2]
            if problems or report.get("errors"):
                print(f"chart lint failed: {problems or report.get('errors')}", file=sys.stderr)
                return 1
            archive = helm.package(staged, destination=staging, version=args.version, app_version=args.version)
            helm.push(archive, args.remote, plain_http=args.plain_http)
        except helm.HelmError as error:
            print(f"{type(error).__name__}: {error}", file=sys.stderr)
            return 1
    print(f"{args.remote.removeprefix('oci://')}/{Path(args.chart_dir).name}:{args.version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
