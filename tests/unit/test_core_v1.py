"""The embedded core/v1 schemas: the committed data is the pinned release's, every rule
is addressed to a node that exists, and the Python twins agree with Go on quantities."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import BaseModel

from arqfleet.operator import core_v1, models
from arqfleet.operator.core_v1_rules import OVERLAYS, RULES
from arqfleet.operator.k8s_syntax import go_search, is_annotation_key, is_label_key, parse_quantity
from core_v1_schemas import OUTPUT, fresh, pinned_version


def test_committed_schemas_equal_a_fresh_extraction() -> None:
    text = fresh(offline=True)
    if text is None:
        pytest.skip(
            f"k8s.io/kubernetes@{pinned_version()} is not in the Go module cache (or no `go`): "
            "`make setup` builds the control plane from it"
        )
    assert OUTPUT.read_text() == text, "run `make kube-schemas`"


def test_the_data_names_the_pinned_release() -> None:
    assert core_v1.data()["source"].startswith(f"k8s.io/kubernetes@{pinned_version()} ")


def test_every_overlay_and_rule_names_a_schema_node() -> None:
    known = core_v1.addresses()
    assert sorted(set(OVERLAYS) - known) == []
    assert sorted(set(RULES) - known) == []


@pytest.mark.parametrize(
    ("model", "definition"),
    [
        (models.ResourceRequirements, "io.k8s.api.core.v1.ResourceRequirements"),
        (models.EnvVar, "io.k8s.api.core.v1.EnvVar"),
        (models.EnvFromSource, "io.k8s.api.core.v1.EnvFromSource"),
        (models.Toleration, "io.k8s.api.core.v1.Toleration"),
    ],
)
def test_typed_models_have_exactly_the_upstream_fields(
    model: type[BaseModel], definition: str
) -> None:
    # extra="forbid" would refuse a field upstream allows, and a field upstream lacks would
    # be refused by the API server but not here.
    upstream = set(core_v1.data()["definitions"][definition]["properties"])
    assert {f.alias or name for name, f in model.model_fields.items()} == upstream


def test_quantities_render_as_kubebuilder_does() -> None:
    limits = core_v1.crd_schema("Container.resources")["properties"]["limits"]
    quantity = limits["additionalProperties"]
    assert quantity["x-kubernetes-int-or-string"] is True
    assert quantity["pattern"].startswith(r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))")
    assert "type" not in quantity


def test_upstream_list_markers_are_kept() -> None:
    env = core_v1.crd_schema("Container.env")
    assert (env["x-kubernetes-list-type"], env["x-kubernetes-list-map-keys"]) == ("map", ["name"])
    spread = core_v1.crd_schema("PodSpec.topologySpreadConstraints")
    assert spread["x-kubernetes-list-map-keys"] == ["topologyKey", "whenUnsatisfiable"]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Decimal("0.5")),
        ("1.5", Decimal("1.5")),
        ("1Ki", Decimal(1024)),
        ("2Gi", Decimal(2 * 1024**3)),
        ("1e3", Decimal(1000)),
        ("1E", Decimal(10**18)),
        ("+.5k", Decimal(500)),
        ("-1", Decimal(-1)),
        ("5.", Decimal(5)),
        (3, Decimal(3)),
    ],
)
def test_quantities_parse_as_go_does(text: int | str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "1GB", "1gi", "half", "1e1.5", "1e", "1 ", ".", "1K", True])
def test_not_quantities(text: object) -> None:
    assert parse_quantity(text) is None  # type: ignore[arg-type]


def test_label_and_annotation_keys() -> None:
    assert is_label_key("example.com/a_b.c-d")
    assert not is_label_key("Example.com/a")  # annotation keys are checked lowercased
    assert is_annotation_key("Example.com/a")
    assert not is_label_key("a" * 64)
    assert is_label_key(f"{'a' * 253}/b")
    assert not is_label_key(f"{'a' * 254}/b")


def test_go_search_ends_at_the_end_of_the_text() -> None:
    assert go_search("^a$", "a")
    assert not go_search("^a$", "a\n")  # Python's own `$` would match here
