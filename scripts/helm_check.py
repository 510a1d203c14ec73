#!/usr/bin/env python3
"""Real Helm (Helm 4's Go SDK through PyPI's helm-python-sdk, `import
helm_python`) for the chart tests in control/tests/helm.rs. Each command
prints one JSON document on stdout; a Helm error prints
{"error": ..., "type": ...} and exits 1, so the caller shows Helm's (or the
API server's) own message.

  lint CHART [--values FILE]
  render CHART --release NAME --namespace NS [--values FILE] [--set-json JSON]
  install|upgrade KUBECONFIG CHART --release NAME --namespace NS [--values FILE] [--set-json JSON]
  uninstall KUBECONFIG --release NAME --namespace NS
  list KUBECONFIG --namespace NS
"""

import argparse
import json
import re
import sys

import helm_python as helm


def merged(base, extra):
    """`extra` deep-merged over `base` (dicts merge, everything else replaces)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def values(args):
    vals = {}
    if args.values:
        with open(args.values, encoding="utf-8") as f:
            vals = helm.values_from_yaml(f.read()) or {}
    if args.set_json:
        vals = merged(vals, json.loads(args.set_json))
    return vals


DOC_SEPARATOR = re.compile(r"^---\s*$", re.MULTILINE)


def objects(manifests):
    """[{"template", "object"}] of every non-empty YAML document."""
    out = []
    for template, text in sorted(manifests.items()):
        if template.endswith("NOTES.txt"):
            continue
        for doc in DOC_SEPARATOR.split(text):
            if not doc.strip():
                continue
            obj = helm.values_from_yaml(doc)
            if obj:
                out.append({"template": template, "object": obj})
    return out


def release_objects(release):
    """The objects of a release's rendered manifest (one string)."""
    return objects({"manifest": release.get("manifest", "")})


def summary(release):
    info = {k: v for k, v in release.items() if k not in ("manifest", "chart", "config")}
    info["objects"] = release_objects(release)
    return info


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["lint", "render", "install", "upgrade", "uninstall", "list"])
    p.add_argument("paths", nargs="*")
    p.add_argument("--values")
    p.add_argument("--set-json")
    p.add_argument("--release")
    p.add_argument("--namespace", default="default")
    args = p.parse_args()

    if args.command == "lint":
        (chart,) = args.paths
        report = helm.lint(chart, values(args), strict=True, namespace=args.namespace)
        return report
    if args.command == "render":
        (chart,) = args.paths
        c = helm.Chart.load(chart)
        rendered = c.render(values(args), name=args.release, namespace=args.namespace, is_install=True)
        return {"objects": objects(rendered), "notes": rendered.get(f"{c.name}/templates/NOTES.txt", "")}
    kubeconfig = args.paths[0]
    with helm.Config(kubeconfig_path=kubeconfig, namespace=args.namespace) as cfg:
        if args.command == "install":
            rel = cfg.install(args.paths[1], args.release, values(args), create_namespace=True, timeout=60)
            return summary(rel)
        if args.command == "upgrade":
            rel = cfg.upgrade(args.paths[1], args.release, values(args), timeout=60)
            return summary(rel)
        if args.command == "uninstall":
            return cfg.uninstall(args.release, timeout=60)
        return cfg.list(all_states=True)


if __name__ == "__main__":
    try:
        result = main()
    except helm.HelmError as e:
        json.dump({"error": str(e), "type": type(e).__name__}, sys.stdout)
        sys.exit(1)
    json.dump(result, sys.stdout, default=str)
