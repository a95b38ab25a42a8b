#!/usr/bin/env python3
"""Extract the core/v1 OpenAPI schemas a JobQueue embeds from the pinned Kubernetes release.

The JobQueue passes Kubernetes types through to the worker Deployment (resources, env, envFrom,
tolerations, affinity, topology spread, node selector, pod labels and annotations). Its CRD
embeds their upstream schemas, as kubebuilder-generated CRDs do, so that a careless value is
refused when the JobQueue is applied rather than when the Deployment is. The schemas come from
the release the local control plane is built from (k8s.io/kubernetes in hack/kube/go.mod):
`api/openapi-spec/v3/api__v1_openapi.json` in the module source, the spec that release serves.

What this keeps and changes (arqfleet.operator.core_v1 renders the result into the CRD):
- only the fields in FIELDS and the definitions they reach;
- `allOf: [{$ref}]` wrappers become plain `$ref`s into "definitions" (inlined when rendered);
- Quantity (`oneOf: string | number`, not structural) becomes int-or-string with the quantity
  pattern kubebuilder renders;
- `default`s are dropped: upstream defaults every required string to "" (EnvVar.name,
  TopologySpreadConstraint.topologyKey...), which in a CRD would satisfy `required` with an
  empty value that Go validation then rejects at Deployment apply, far from the user;
  and the JobQueue would come back from the server with values the models never wrote;
- strategic-merge-patch markers are dropped (CRDs do not support them);
- OMITTED fields are dropped, each for the reason given there.

Usage: hack/core_v1_schemas.py [--check]      (`make kube-schemas`)
writes operator/arqfleet/operator/k8s_core_v1.json; --check exits 1 if the file is stale.
tests/unit/test_core_v1.py compares the committed file with a fresh extraction.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
GO_MODULE_DIR = REPO / "hack" / "kube"
OUTPUT = REPO / "operator" / "arqfleet" / "operator" / "k8s_core_v1.json"
SPEC = "api/openapi-spec/v3/api__v1_openapi.json"
PREFIX = "#/components/schemas/"

# The JobQueue fields that are core/v1 types, as "<definition>.<property>" of upstream.
FIELDS = {
    "Container.resources": "io.k8s.api.core.v1.Container",
    "Container.env": "io.k8s.api.core.v1.Container",
    "Container.envFrom": "io.k8s.api.core.v1.Container",
    "PodSpec.nodeSelector": "io.k8s.api.core.v1.PodSpec",
    "PodSpec.tolerations": "io.k8s.api.core.v1.PodSpec",
    "PodSpec.affinity": "io.k8s.api.core.v1.PodSpec",
    "PodSpec.topologySpreadConstraints": "io.k8s.api.core.v1.PodSpec",
    "ObjectMeta.labels": "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
    "ObjectMeta.annotations": "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
}

# Fields a JobQueue cannot use: valid upstream, but the worker pod arqfleet renders has nothing
# they could refer to, so the Deployment would be refused (or the container fail) later.
OMITTED = {
    "io.k8s.api.core.v1.ResourceRequirements.claims": "needs pod.spec.resourceClaims, which "
    "a JobQueue does not expose: every claim would fail Deployment validation",
    "io.k8s.api.core.v1.EnvVarSource.fileKeyRef": "reads a file from an emptyDir volume that "
    "an init container writes; the worker pod has neither",
}

# kubebuilder's rendering of resource.Quantity (its `+kubebuilder:validation:Pattern`).
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?"
    r"(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
DROPPED_KEYS = ("default", "x-kubernetes-patch-strategy", "x-kubernetes-patch-merge-key")


def pinned_version() -> str:
    """The k8s.io/kubernetes version hack/kube/go.mod requires (what the suite runs)."""
    text = (GO_MODULE_DIR / "go.mod").read_text()
    found = re.search(r"^require k8s\.io/kubernetes (v\S+)$", text, re.MULTILINE)
    if found is None:
        raise RuntimeError("hack/kube/go.mod does not require k8s.io/kubernetes")
    return found.group(1)


def module_dir(offline: bool = False) -> Path | None:
    """The module's source in the Go module cache, or None when it is not there.

    Asks `go list -m` (as `go build` resolves it); offline, the module proxy is not asked, so
    a machine without the module in its cache gets None instead of a download."""
    go = shutil.which("go") or next(
        (p for p in ("/usr/local/go/bin/go",) if Path(p).exists()), None
    )
    if go is None:
        return None
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
    if offline:
        env["GOPROXY"] = "off"
    done = subprocess.run(
        [go, "list", "-m", "-f", "{{.Dir}}", "k8s.io/kubernetes"],
        cwd=GO_MODULE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    path = Path(done.stdout.strip()) if done.returncode == 0 else None
    return path if path is not None and (path / SPEC).is_file() else None


def _clean(node: Any) -> Any:
    """One upstream schema node with the changes the module docstring lists."""
    if isinstance(node, list):
        return [_clean(item) for item in node]
    if not isinstance(node, dict):
        return node
    wrapped = node.get("allOf")
    if isinstance(wrapped, list) and len(wrapped) == 1 and "$ref" in wrapped[0]:
        node = {**{k: v for k, v in node.items() if k != "allOf"}, **wrapped[0]}
    out = {k: _clean(v) for k, v in node.items() if k not in DROPPED_KEYS}
    if "$ref" in out:
        out["$ref"] = "#/definitions/" + out["$ref"].removeprefix(PREFIX)
    return out


def _refs(node: Any) -> set[str]:
    if isinstance(node, list):
        return set().union(*(_refs(item) for item in node))
    if not isinstance(node, dict):
        return set()
    found = {node["$ref"].rsplit("/", 1)[-1]} if "$ref" in node else set()
    return found.union(*(_refs(v) for v in node.values()))


def _without_omitted(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    properties = schema.get("properties")
    if not properties:
        return schema
    kept = {k: v for k, v in properties.items() if f"{name}.{k}" not in OMITTED}
    required = [r for r in schema.get("required", []) if r in kept]
    out = {**schema, "properties": kept}
    if "required" in schema:
        out["required"] = required
    return out


def extract(spec: dict[str, Any], version: str) -> dict[str, Any]:
    """The data file: the FIELDS' schemas and every definition they reach, cleaned."""
    schemas: dict[str, Any] = spec["components"]["schemas"]
    fields = {}
    for field, definition in FIELDS.items():
        prop = field.split(".", 1)[1]
        fields[field] = _clean(schemas[definition]["properties"][prop])
    definitions: dict[str, Any] = {}
    pending = set().union(*(_refs(f) for f in fields.values()))
    while pending:
        name = pending.pop()
        if name in definitions:
            continue
        if name == QUANTITY:
            definitions[name] = {
                "description": schemas[name].get("description", ""),
                "x-kubernetes-int-or-string": True,
                "pattern": QUANTITY_PATTERN,
            }
            continue
        definitions[name] = _without_omitted(name, _clean(schemas[name]))
        pending |= _refs(definitions[name]) - set(definitions)
    short = [name.rsplit(".", 1)[-1] for name in definitions]
    if len(set(short)) != len(short):
        raise RuntimeError(f"definition short names collide: {sorted(short)}")
    return {
        "source": f"k8s.io/kubernetes@{version} {SPEC}",
        "generator": "hack/core_v1_schemas.py (make kube-schemas)",
        "omitted": OMITTED,
        "fields": fields,
        "definitions": dict(sorted(definitions.items())),
    }


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def fresh(offline: bool = False) -> str | None:
    """A fresh extraction as the committed text, or None when the module is not available."""
    directory = module_dir(offline=offline)
    if directory is None:
        return None
    spec = json.loads((directory / SPEC).read_text())
    return render(extract(spec, pinned_version()))


def main(argv: list[str]) -> int:
    text = fresh()
    if text is None:
        print(
            f"k8s.io/kubernetes@{pinned_version()} is not in the Go module cache: "
            "run `make setup` (it builds the control plane from it)",
            file=sys.stderr,
        )
        return 2
    if "--check" in argv:
        if OUTPUT.read_text() != text:
            print(f"{OUTPUT.relative_to(REPO)} is stale: run `make kube-schemas`", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
