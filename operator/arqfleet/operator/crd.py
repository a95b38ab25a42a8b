"""Render the JobQueue CustomResourceDefinition from the pydantic models.

pydantic emits JSON Schema (with $refs, anyOf-null for optionals, additionalProperties:false);
the API server wants a *structural* OpenAPI v3 schema (every node typed and inlined, no $ref,
no additionalProperties beside properties). This module converts one into the other and adds
what only Kubernetes knows: the status subresource, printer columns, names and categories.
Fields the models declare as core/v1 types get the upstream schema from
arqfleet.operator.core_v1 instead of pydantic's.

Pure: returns data or text, writes nothing.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

from arqfleet.operator import core_v1, models

CRD_NAME = f"{models.PLURAL}.{models.API_GROUP}"
CRD_FILENAME = f"{CRD_NAME}.yaml"

# Keys of a JSON Schema node that a structural OpenAPI v3 schema keeps as they are.
_KEPT_KEYS = (
    "type",
    "format",
    "description",
    "default",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
)

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Queue", "type": "string", "jsonPath": ".spec.queueName"},
    {
        "name": "Ready",
        "type": "integer",
        "jsonPath": ".status.queue.ready",
        "description": "Jobs ready to run and not yet picked up",
    },
    {
        "name": "Running",
        "type": "integer",
        "jsonPath": ".status.queue.inProgress",
        "description": "Jobs running now",
    },
    {
        "name": "Oldest",
        "type": "date",
        "jsonPath": ".status.queue.oldestReadyTime",
        "description": "How long the oldest ready job has waited",
    },
    {"name": "Replicas", "type": "integer", "jsonPath": ".status.replicas"},
    {"name": "Desired", "type": "integer", "jsonPath": ".status.desiredReplicas"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Deferred",
        "type": "integer",
        "jsonPath": ".status.queue.deferred",
        "priority": 1,
    },
    {
        "name": "Status",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
        "priority": 1,
    },
    {"name": "Last-Scale", "type": "string", "jsonPath": ".status.lastScaleReason", "priority": 1},
]


class _Converter:
    def __init__(self, defs: dict[str, Any]) -> None:
        self._defs = defs

    def convert(self, node: dict[str, Any]) -> dict[str, Any]:
        node = self._resolve(node)
        if core_v1.MARKER in node:
            return self._convert_core_v1(node)
        if "anyOf" in node:
            return self._convert_union(node)
        out: dict[str, Any] = {k: node[k] for k in _KEPT_KEYS if k in node}
        out.update({k: v for k, v in node.items() if k.startswith("x-kubernetes-")})
        kind = node.get("type")
        if kind == "object":
            self._convert_object(node, out)
        elif kind == "array":
            out["items"] = self.convert(node["items"])
        elif kind is None:
            raise ValueError(f"schema node without a type cannot be structural: {node}")
        return out

    def _convert_core_v1(self, node: dict[str, Any]) -> dict[str, Any]:
        """A field the models declare as a core/v1 type: upstream's schema, not pydantic's."""
        wanted = dict(node[core_v1.MARKER])
        schema = core_v1.crd_schema(wanted.pop("field"), wanted)
        if "description" in node:  # the model's own words win over upstream's
            schema["description"] = node["description"]
        return schema

    def _resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        """Inline a $ref; keys beside it (description, default) win over the target's."""
        if "$ref" not in node:
            return node
        target = self._defs[node["$ref"].rsplit("/", 1)[-1]]
        return {**target, **{k: v for k, v in node.items() if k != "$ref"}}

    def _convert_union(self, node: dict[str, Any]) -> dict[str, Any]:
        options = [self._resolve(o) for o in node["anyOf"] if o.get("type") != "null"]
        siblings = {k: v for k, v in node.items() if k != "anyOf" and k != "default"}
        if node.get("default") is not None:
            siblings["default"] = node["default"]
        if len(options) == 1:
            return self.convert({**options[0], **siblings})
        if sorted(str(o.get("type")) for o in options) == ["integer", "string"]:
            out: dict[str, Any] = {"x-kubernetes-int-or-string": True}
            out.update({k: siblings[k] for k in ("description", "default") if k in siblings})
            return out
        raise ValueError(f"unions other than optional or int-or-string are not structural: {node}")

    def _convert_object(self, node: dict[str, Any], out: dict[str, Any]) -> None:
        properties = node.get("properties")
        extra = node.get("additionalProperties")
        if properties:
            required = list(node.get("required") or [])
            out["properties"] = {
                name: self._convert_property(prop, required=name in required)
                for name, prop in properties.items()
            }
            if required:
                out["required"] = required
        elif isinstance(extra, dict) and extra:
            out["additionalProperties"] = self.convert(extra)
        else:
            # A free-form dict[str, Any] would be x-kubernetes-preserve-unknown-fields: any
            # value admitted, and a careless one refused only when the Deployment is applied.
            # A Kubernetes type is declared with core_v1.CoreV1 instead.
            raise ValueError(f"free-form objects are not validated at admission: {node}")

    def _convert_property(self, prop: dict[str, Any], required: bool) -> dict[str, Any]:
        converted = self.convert(prop)
        if required:
            converted.pop("default", None)  # a required field's default would never apply
        elif "default" in converted:
            converted["default"] = _without_nulls(converted["default"])
        return converted


def _without_nulls(value: Any) -> Any:
    """A default as the API server must see it: unset optionals absent, not null."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of one model, inlined."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return _Converter(schema.get("$defs", {})).convert(schema)


def jobqueue_schema() -> dict[str, Any]:
    """The whole JobQueue object's schema: apiVersion/kind/metadata, spec and status."""
    return {
        "type": "object",
        "description": "A queue of ARQ jobs and the autoscaled worker Deployment that runs them.",
        "x-kubernetes-validations": [
            {
                "rule": f"size(self.metadata.name) <= {models.MAX_NAME_LENGTH}",
                "message": f"metadata.name must be at most {models.MAX_NAME_LENGTH} characters: "
                "it names the worker Deployment (<name>-worker) and labels its pods",
            }
        ],
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": openapi_schema(models.JobQueueSpec),
            "status": openapi_schema(models.JobQueueStatus),
        },
    }


def render_crd() -> dict[str, Any]:
    """The CustomResourceDefinition object."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {
                "app.kubernetes.io/name": "arqfleet",
                "app.kubernetes.io/part-of": "arqfleet",
            },
        },
        "spec": {
            "group": models.API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": models.KIND,
                "listKind": f"{models.KIND}List",
                "plural": models.PLURAL,
                "singular": models.SINGULAR,
                "shortNames": list(models.SHORT_NAMES),
                "categories": list(models.CATEGORIES),
            },
            "versions": [
                {
                    "name": models.API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": jobqueue_schema()},
                }
            ],
        },
    }


def render_crd_yaml() -> str:
    """The CRD as the YAML committed in crds/ (and copied into the Helm chart)."""
    header = (
        "# Generated by `arqfleet crd` from arqfleet.operator.models. Do not edit by hand:\n"
        "# change the models and run `arqfleet crd --output crds/`.\n"
    )
    body = yaml.safe_dump(render_crd(), sort_keys=False, width=100, allow_unicode=True)
    return header + body
