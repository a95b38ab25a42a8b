"""Upstream core/v1 schemas for the JobQueue fields that are Kubernetes types.

`k8s_core_v1.json` holds the OpenAPI schemas of those fields as the pinned Kubernetes release
publishes them (extracted by hack/core_v1_schemas.py). This module inlines them into one
structural schema per field, adds what Go validation checks beyond the schema
(arqfleet.operator.core_v1_rules), and serves that schema twice from the same data:

- `crd_schema(field)` for the CRD (arqfleet.operator.crd), with CEL rules as
  x-kubernetes-validations;
- `problems(field, value)` for the pydantic models, a small OpenAPI validator plus the Python
  twin of every CEL rule, so a model refuses what the API server refuses.

A model field declares its type with `CoreV1("PodSpec.affinity")` in `Annotated[...]`.

Pure: the data file is read once, on first use; nothing is written.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from pydantic import BaseModel, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from arqfleet.operator.core_v1_rules import OVERLAYS, RULES, Rule
from arqfleet.operator.k8s_syntax import go_search

DATA_FILE = "k8s_core_v1.json"
# The JSON Schema key by which a model field asks crd.py for a core/v1 schema.
MARKER = "x-arqfleet-core-v1"
RULES_KEY = "x-kubernetes-validations"
_KEPT = (
    "type",
    "format",
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
    "required",
)


@cache
def data() -> dict[str, Any]:
    text = resources.files("arqfleet.operator").joinpath(DATA_FILE).read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _build(node: dict[str, Any], address: str) -> dict[str, Any]:
    """One schema node, $refs inlined, with the overlays and rules of `address`."""
    if "$ref" in node:
        name = node["$ref"].removeprefix("#/definitions/")
        out = _build(data()["definitions"][name], name.rsplit(".", 1)[-1])
    else:
        out = {k: v for k, v in node.items() if k in _KEPT or k.startswith("x-kubernetes-")}
        out = copy.deepcopy(out)
        if "properties" in node:
            out["properties"] = {
                name: _build(prop, f"{address}.{name}") for name, prop in node["properties"].items()
            }
        if "items" in node:
            out["items"] = _build(node["items"], f"{address}[]")
        if isinstance(node.get("additionalProperties"), dict):
            out["additionalProperties"] = _build(node["additionalProperties"], f"{address}{{}}")
    for key, value in OVERLAYS.get(address, {}).items():
        out[key] = sorted({*out.get(key, []), *value}) if key == "required" else value
    if address in RULES:
        out[RULES_KEY] = [*out.get(RULES_KEY, []), *RULES[address]]
    return out


@cache
def _schema(field: str, bounds: tuple[tuple[str, int], ...]) -> dict[str, Any]:
    if field not in data()["fields"]:
        raise KeyError(f"{field} is not extracted: add it to FIELDS in hack/core_v1_schemas.py")
    node = data()["fields"][field]
    # Upstream descriptions only at the field itself: the nested ones would add ~75 KB to a
    # CRD of ~130 KB, toward the 256 KiB that a client-side `kubectl apply` can store.
    described = {"description": node["description"]} if "description" in node else {}
    return {**described, **_build(node, field), **dict(bounds)}


def addresses() -> set[str]:
    """Every address that OVERLAYS and RULES could name (a test checks they name only these)."""
    found: set[str] = set()

    def walk(node: dict[str, Any], address: str) -> None:
        found.add(address)
        if "$ref" in node:
            name = node["$ref"].removeprefix("#/definitions/")
            walk(data()["definitions"][name], name.rsplit(".", 1)[-1])
        for name, prop in node.get("properties", {}).items():
            walk(prop, f"{address}.{name}")
        if "items" in node:
            walk(node["items"], f"{address}[]")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{address}{{}}")

    for field, node in data()["fields"].items():
        walk(node, field)
    return found


def _rendered(node: Any) -> Any:
    if isinstance(node, Rule):
        return node.entry()
    if isinstance(node, dict):
        return {k: _rendered(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_rendered(v) for v in node]
    return node


def crd_schema(field: str, bounds: dict[str, int] | None = None) -> dict[str, Any]:
    """The structural CRD schema of a core/v1 field, CEL rules included."""
    rendered: dict[str, Any] = _rendered(_schema(field, tuple(sorted((bounds or {}).items()))))
    return rendered


# -- the same schema, checked in Python -------------------------------------------------------

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def _type_problem(schema: dict[str, Any], value: Any) -> str | None:
    if schema.get("x-kubernetes-int-or-string"):
        wanted: tuple[type, ...] = (int, str)
        name = "an integer or a string"
    else:
        wanted, name = _TYPES[schema["type"]], f"of type {schema['type']}"
    if isinstance(value, bool) and bool not in wanted:
        return f"must be {name}"
    return None if isinstance(value, wanted) else f"must be {name}"


def _string_problems(schema: dict[str, Any], value: str) -> list[str]:
    found = []
    if len(value) > schema.get("maxLength", len(value)):
        found.append(f"may not be longer than {schema['maxLength']}")
    if len(value) < schema.get("minLength", 0):
        found.append(f"should be at least {schema['minLength']} chars long")
    # OpenAPI patterns search (Go's MatchString); ours are anchored.
    if "pattern" in schema and not go_search(schema["pattern"], value):
        found.append(f"should match '{schema['pattern']}'")
    return found


def _scalar_problems(schema: dict[str, Any], value: Any) -> list[str]:
    found = []
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"Unsupported value: supported values: {', '.join(schema['enum'])}")
    if isinstance(value, str):
        found += _string_problems(schema, value)
    elif isinstance(value, int | float):
        if value < schema.get("minimum", value):
            found.append(f"should be greater than or equal to {schema['minimum']}")
        if value > schema.get("maximum", value):
            found.append(f"should be less than or equal to {schema['maximum']}")
    return found


def _object_problems(schema: dict[str, Any], value: dict[str, Any], path: str) -> list[str]:
    found = [f"{path}.{k}: Required value" for k in schema.get("required", []) if k not in value]
    if len(value) > schema.get("maxProperties", len(value)):
        found.append(f"{path}: must have at most {schema['maxProperties']} items")
    properties = schema.get("properties")
    extra = schema.get("additionalProperties")
    for key, item in value.items():
        if properties is not None:
            if key not in properties:
                found.append(f'{path}: unknown field "{key}"')
            else:
                found += _problems(properties[key], item, f"{path}.{key}")
        elif isinstance(extra, dict):
            found += _problems(extra, item, f"{path}.{key}")
    return found


def _list_problems(schema: dict[str, Any], value: list[Any], path: str) -> list[str]:
    found = []
    if len(value) > schema.get("maxItems", len(value)):
        found.append(f"{path}: must have at most {schema['maxItems']} items")
    if len(value) < schema.get("minItems", 0):
        found.append(f"{path}: should have at least {schema['minItems']} items")
    for index, item in enumerate(value):
        found += _problems(schema["items"], item, f"{path}[{index}]")
    kind = schema.get("x-kubernetes-list-type")
    if kind in ("map", "set") and not found:
        keys = schema.get("x-kubernetes-list-map-keys", [])
        seen = [json.dumps([i.get(k) for k in keys] if kind == "map" else i) for i in value]
        found += [f"{path}[{i}]: Duplicate value" for i, s in enumerate(seen) if s in seen[:i]]
    return found


def _problems(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    wrong_type = _type_problem(schema, value)
    if wrong_type is not None:
        return [f"{path}: {wrong_type}"]
    if isinstance(value, dict):
        found = _object_problems(schema, value, path)
    elif isinstance(value, list):
        found = _list_problems(schema, value, path)
    else:
        found = [f"{path}: {p}" for p in _scalar_problems(schema, value)]
    if found:
        return found  # the rules read a well-formed node only (CEL's are guarded the same way)
    for rule in schema.get(RULES_KEY, []):
        if not rule.check(value):
            found.append(f"{path}{rule.field_path or ''}: {rule.message}")
    return found


def pruned(value: Any) -> Any:
    """`value` as the API server validates and stores it: models dumped by alias, and null
    object fields and map values dropped (it prunes nulls that the schema does not allow)."""
    if isinstance(value, BaseModel):
        value = value.model_dump(by_alias=True, exclude_none=True)
    if isinstance(value, list):
        return [pruned(v) for v in value]
    if isinstance(value, dict):
        return {k: pruned(v) for k, v in value.items() if v is not None}
    return value


def problems(field: str, value: Any, bounds: dict[str, int] | None = None) -> list[str]:
    """What the API server would refuse in `value` for the core/v1 field, as messages."""
    schema = _schema(field, tuple(sorted((bounds or {}).items())))
    return _problems(schema, pruned(value), "")


@dataclass(frozen=True)
class CoreV1:
    """`Annotated` metadata: this model field is the core/v1 field `field`, e.g.
    "PodSpec.affinity", with optional bounds on its own size (maxItems, maxProperties)."""

    field: str
    max_items: int | None = None
    max_properties: int | None = None

    @property
    def bounds(self) -> dict[str, int]:
        given = {"maxItems": self.max_items, "maxProperties": self.max_properties}
        return {k: v for k, v in given.items() if v is not None}

    def check(self, value: Any) -> Any:
        """Refuse what the API server would; pass on what it would store."""
        if value is None:
            return value
        value = pruned(value)
        found = problems(self.field, value, self.bounds)
        if found:
            raise ValueError("; ".join(p.removeprefix(": ") for p in found))
        return value

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_before_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {MARKER: {"field": self.field, **self.bounds}}
