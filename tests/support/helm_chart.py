"""`helm lint` and `helm template` through the Helm SDK (PyPI `helm-python-sdk`, Helm v4 via
ctypes; no `helm` binary exists or is needed). Called by tests/it/chart.rs.

    helm_chart.py lint CHART [-f VALUES]... [--set-json PATH=JSON]...
    helm_chart.py template CHART [-f VALUES]... [--set-json PATH=JSON]... [--notes]

    helm_chart.py pull oci://REGISTRY/REPO/NAME --version V --destination DIR [--plain-http]

`pull` downloads a chart by OCI reference (as `helm install oci://…` resolves it) and prints
the archive's path, which `lint` and `template` accept like a chart directory.
`template` prints the rendered manifests as one multi-document YAML stream (or only the
rendered NOTES.txt with --notes). Values files are merged in order and `--set-json` applied
last, as `helm -f … --set-json …` does. Failures (schema violations, template `fail`s, lint
findings at warning level or above, which is what `helm lint --strict` rejects) go to stderr
with exit status 1.
"""

import argparse
import sys

import helm_python as helm

RELEASE = "ocync"
NAMESPACE = "mirror"
SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}


def merge(base, override):
    """Deep merge of values maps, the override winning (helm's -f order)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def user_values(files, set_json):
    values = {}
    for path in files:
        with open(path, encoding="utf-8") as f:
            values = merge(values, helm.values_from_yaml(f.read()) or {})
    for expression in set_json:
        values = merge(values, helm.parse_set_json(expression))
    return values


def lint(args, values):
    report = helm.lint(args.chart, values, strict=True, namespace=NAMESPACE)
    findings = [m for m in report.get("messages") or [] if m.get("severity", 0) >= 2]
    for message in report.get("messages") or []:
        print(f"[{SEVERITY.get(message.get('severity'), '?')}] {message.get('path')}: {message.get('error')}")
    for error in report.get("errors") or []:
        print(f"[ERROR] {error}", file=sys.stderr)
    if findings or report.get("errors"):
        print(f"lint failed: {len(findings)} finding(s) at warning or above", file=sys.stderr)
        return 1
    print(f"{report.get('total_charts_linted')} chart(s) linted, no findings at warning or above")
    return 0


def template(args, values):
    with helm.Chart.load(args.chart) as chart:
        # Like `helm template`: coalesces with the chart defaults, then validates the result
        # against values.schema.json before rendering.
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True, revision=1)
    if args.notes:
        notes = [text for path, text in manifests.items() if path.endswith("/NOTES.txt")]
        print("".join(notes))
        return 0
    for path in sorted(manifests):
        text = manifests[path]
        if path.endswith("NOTES.txt") or not text.strip():
            continue
        print(f"---\n# Source: {path}\n{text.strip()}")
    return 0


def pull(args):
    helm.pull(args.chart, version=args.version, destination=args.destination, plain_http=args.plain_http)
    name = args.chart.rstrip("/").rsplit("/", 1)[-1]
    print(f"{args.destination}/{name}-{args.version}.tgz")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["lint", "template", "pull"])
    parser.add_argument("chart")
    parser.add_argument("-f", "--values", action="append", default=[])
    parser.add_argument("--set-json", action="append", default=[])
    parser.add_argument("--notes", action="store_true")
    parser.add_argument("--version")
    parser.add_argument("--destination")
    parser.add_argument("--plain-http", action="store_true")
    args = parser.parse_args()
    try:
        if args.command == "pull":
            return pull(args)
        values = user_values(args.values, args.set_json)
        return lint(args, values) if args.command == "lint" else template(args, values)
    except helm.HelmError as error:
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
