"""RBAC rendering and operator settings."""

from __future__ import annotations

import pytest

from arqfleet.operator import constants as c
from arqfleet.operator import rbac
from arqfleet.operator.__main__ import load_settings, parse_args
from arqfleet.operator.reconcile import scaler_owns_replicas


def test_namespaced_install_is_roles_only() -> None:
    objects = rbac.namespaced(["a", "b"])
    assert {o["kind"] for o in objects} == {"Role", "RoleBinding"}
    assert {o["metadata"]["namespace"] for o in objects} == {"a", "b"}


def test_clusterwide_install_binds_the_same_rules() -> None:
    role, binding = rbac.clusterwide()
    assert role["kind"] == "ClusterRole"
    assert role["rules"] == rbac.NAMESPACED_RULES
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_secrets_are_only_read_one_by_one() -> None:
    assert {verb for group, resource, verb in rbac.granted() if resource == "secrets"} == {"get"}


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARQFLEET_NAMESPACES", "x, y")
    monkeypatch.setenv("ARQFLEET_LIVENESS_PORT", "9000")
    settings = load_settings(parse_args([]))
    assert settings.namespaces == ["x", "y"]
    assert not settings.clusterwide
    settings = load_settings(parse_args(["-n", "z", "--liveness-port", "9100"]))
    assert settings.namespaces == ["z"]
    assert settings.liveness_endpoint == "http://0.0.0.0:9100/healthz"


def test_scaler_ownership_read_from_managed_fields() -> None:
    owned = {
        "metadata": {
            "managedFields": [
                {"manager": "arqfleet", "fieldsV1": {"f:spec": {"f:template": {}}}},
                {
                    "manager": "arqfleet-scaler",
                    "subresource": "scale",
                    "fieldsV1": {"f:spec": {"f:replicas": {}}},
                },
            ]
        }
    }
    assert scaler_owns_replicas(owned)
    assert not scaler_owns_replicas(
        {"metadata": {"managedFields": owned["metadata"]["managedFields"][:1]}}
    )


def test_every_kopf_setting_the_operator_tunes_exists() -> None:
    """The kopf lower bound in pyproject.toml is the first release with all of these."""
    import kopf

    from arqfleet.operator.handlers import configure_kopf
    from arqfleet.operator.settings import OperatorSettings

    settings = kopf.OperatorSettings()
    configure_kopf(settings, OperatorSettings())
    assert settings.scanning.disabled is True
    assert settings.watching.label_selectors["apps", "deployments"] == c.MANAGED_SELECTOR
    assert settings.peering.standalone is True
