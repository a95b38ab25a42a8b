"""The committed CRD is exactly what the models render, and it is a structural schema."""

from __future__ import annotations

import json
from typing import Any

from arqfleet.operator import crd
from arqfleet.operator.cli import main
from tests.support.kube import REPO_ROOT

COMMITTED = REPO_ROOT / "crds" / crd.CRD_FILENAME


def test_committed_crd_equals_generated() -> None:
    assert COMMITTED.read_text() == crd.render_crd_yaml(), (
        "crds/ is stale: run `arqfleet crd --output crds/`"
    )


def test_cli_check_detects_drift(tmp_path: Any) -> None:
    stale = tmp_path / crd.CRD_FILENAME
    stale.write_text("# stale\n")
    assert main(["crd", "--output", str(stale), "--check"]) == 1
    assert main(["crd", "--output", str(tmp_path)]) == 0
    assert main(["crd", "--output", str(stale), "--check"]) == 0


def _walk(node: dict[str, Any], path: str) -> list[str]:
    problems = []
    if "$ref" in node or "anyOf" in node or "allOf" in node:
        problems.append(f"{path}: not inlined")
    if not node.get("type") and not node.get("x-kubernetes-int-or-string"):
        problems.append(f"{path}: no type")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{path}: properties beside additionalProperties")
    for name, child in node.get("properties", {}).items():
        problems += _walk(child, f"{path}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        problems += _walk(node["additionalProperties"], f"{path}[*]")
    if "items" in node:
        problems += _walk(node["items"], f"{path}[]")
    return problems


def test_schema_is_structural() -> None:
    assert _walk(crd.jobqueue_schema(), "") == []


def _rules(node: dict[str, Any]) -> list[dict[str, str]]:
    found = list(node.get("x-kubernetes-validations", []))
    children = [
        *node.get("properties", {}).values(),
        node.get("items"),
        node.get("additionalProperties"),
    ]
    for child in children:
        if isinstance(child, dict):
            found += _rules(child)
    return found


def test_every_cel_rule_has_a_message() -> None:
    rules = _rules(crd.jobqueue_schema())
    assert len(rules) >= 50  # the JobQueue's own and the core/v1 types' Go validation
    assert all(rule.get("message") for rule in rules)
    # A message is static text: it never quotes the value (a Redis URL may hold a password).
    assert not any("messageExpression" in rule for rule in rules)


def test_core_v1_fields_carry_the_upstream_schema() -> None:
    worker = crd.jobqueue_schema()["properties"]["spec"]["properties"]["worker"]["properties"]
    affinity = worker["affinity"]
    assert set(affinity["properties"]) == {"nodeAffinity", "podAffinity", "podAntiAffinity"}
    assert "x-kubernetes-preserve-unknown-fields" not in json.dumps(worker)
    assert worker["tolerations"]["items"]["properties"]["operator"]["enum"] == ["Equal", "Exists"]
    assert worker["env"]["maxItems"] == 128


def test_crd_fits_a_client_side_apply() -> None:
    # `kubectl apply` without --server-side stores the whole object in an annotation, and
    # annotations are limited to 256 KiB in all.
    assert len(json.dumps(crd.render_crd(), separators=(",", ":"))) < 200 * 1024
