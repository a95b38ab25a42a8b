"""The core/v1 schemas the CRD embeds are the ones the API server built here serves.

The committed data comes from the module source (api/openapi-spec/v3); the running
kube-apiserver of the same release serves the same definitions, plus enums and their
descriptions (its OpenAPIEnums feature). This checks both agree, and that every enum
arqfleet adds is a subset of what upstream allows (narrowed where a value needs a gate that is
off by default)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from arqfleet.operator import core_v1
from arqfleet.operator.core_v1_rules import OVERLAYS
from core_v1_schemas import extract, pinned_version
from localcluster import ControlPlane
from tests.support.kube import kubectl

pytestmark = pytest.mark.cluster

ENUM_NOTE = re.compile(r"\n\nPossible enum values:.*", re.DOTALL)


def _without_enums(node: Any) -> Any:
    if isinstance(node, list):
        return [_without_enums(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _without_enums(v) for k, v in node.items() if k != "enum"}
    if isinstance(out.get("description"), str):
        out["description"] = ENUM_NOTE.sub("", out["description"])
    return out


@pytest.fixture(scope="module")
def served(kube_crds: ControlPlane) -> dict[str, Any]:
    spec = json.loads(kubectl(kube_crds, "get", "--raw", "/openapi/v3/api/v1").stdout)
    return extract(spec, pinned_version())


def test_committed_schemas_are_what_the_api_server_serves(served: dict[str, Any]) -> None:
    assert _without_enums(served) == core_v1.data()


def test_added_enums_only_narrow_upstream_ones(served: dict[str, Any]) -> None:
    by_short = {name.rsplit(".", 1)[-1]: schema for name, schema in served["definitions"].items()}
    checked = 0
    for address, overlay in OVERLAYS.items():
        if "enum" not in overlay or "." not in address:
            continue
        definition, prop = address.split(".", 1)
        upstream = by_short[definition]["properties"][prop].get("enum")
        if upstream is not None:
            assert set(overlay["enum"]) <= set(upstream), address
            checked += 1
    assert checked >= 6
