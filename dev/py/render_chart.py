"""Lints and renders the Helm chart offline with Helm's own Go library (helm-python-sdk bundles
it), writing one YAML file per template to --out. Exits 1 on a lint error, a schema violation
or a template that does not render."""

import argparse
import json
import os
import sys

import helm_python


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chart", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--set-json", default="{}", help="values merged over values.yaml, as JSON")
    args = parser.parse_args()
    overrides = json.loads(args.set_json)

    report = helm_python.lint(args.chart, overrides, strict=True, namespace="cezbek")
    problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2] + report.get("errors", [])
    if problems:
        print(json.dumps(problems, indent=2), file=sys.stderr)
        return 1
    chart = helm_python.Chart.load(args.chart)
    try:
        rendered = chart.render(overrides, name="cezbek", namespace="cezbek", is_install=True)
    except helm_python.HelmError as error:
        print(f"render failed: {error}", file=sys.stderr)
        return 1
    os.makedirs(args.out, exist_ok=True)
    for path, manifest in rendered.items():
        if not manifest.strip() or path.endswith("NOTES.txt"):
            continue
        with open(os.path.join(args.out, os.path.basename(path)), "w") as out:
            out.write(manifest.lstrip("\n"))
    print(f"rendered {len(os.listdir(args.out))} manifests to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
