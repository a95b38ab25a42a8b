"""The Helm chart (charts/arqfleet) and the kubectl bundle (deploy/arqfleet.yaml), with the real
helm and kubectl against the local control plane: lint, render, server-side validation, the
bundle's install. `helm install` with the operator running as the chart's pod, on the real
node: tests/e2e/test_chart_operator.py."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from arqfleet.operator import crd, rbac
from localcluster import ControlPlane
from tests.support.helm import CHART, helm
from tests.support.kube import REPO_ROOT, kubectl
from tests.support.monitoring_crds import KINDS, crd_file

pytestmark = pytest.mark.cluster

CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
BUNDLE = REPO_ROOT / "deploy" / "arqfleet.yaml"


def render(*args: str, namespace: str = "arqfleet-system") -> list[dict[str, Any]]:
    out = helm(None, "template", "rel", str(CHART), "--namespace", namespace, *args)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


# -- no cluster needed ------------------------------------------------------------------------


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_lint_strict(values: Path) -> None:
    linted = helm(None, "lint", "--strict", str(CHART), "-f", str(values), check=False)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_the_schema_refuses_unknown_values() -> None:
    refused = helm(None, "template", "rel", str(CHART), "--set", "operator.replicas=3", check=False)
    assert refused.returncode != 0
    assert "replicas" in refused.stderr


def test_generated_files_are_current() -> None:
    """The chart's copies of what Python renders: regenerate with `make chart-files`."""
    assert (CHART / "files" / "crds" / crd.CRD_FILENAME).read_text() == crd.render_crd_yaml()
    rules = yaml.safe_load((CHART / "files" / "rbac-rules.yaml").read_text())
    assert rules == {"rules": rbac.NAMESPACED_RULES}


def test_the_crd_template_equals_crds() -> None:
    [rendered] = [d for d in render() if d["kind"] == "CustomResourceDefinition"]
    committed = yaml.safe_load((REPO_ROOT / "crds" / crd.CRD_FILENAME).read_text())
    assert rendered["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    rendered["metadata"] = {"name": rendered["metadata"]["name"]}
    committed["metadata"] = {"name": committed["metadata"]["name"]}
    assert rendered == committed
    unkept = [d for d in render("--set", "crds.keep=false") if d["kind"].startswith("Custom")]
    assert "annotations" not in unkept[0]["metadata"]
    assert not [d for d in render("--set", "crds.install=false") if d["kind"].startswith("Custom")]


def test_rbac_modes_render_the_operators_own_rules() -> None:
    clusterwide = {d["kind"]: d for d in render()}
    assert clusterwide["ClusterRole"]["rules"] == rbac.NAMESPACED_RULES
    assert "Role" not in clusterwide
    namespaced = render("--set", "rbac.namespaces={team-a,team-b}")
    roles = [d for d in namespaced if d["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert all(r["rules"] == rbac.NAMESPACED_RULES for r in roles)
    # Namespaced mode has nothing cluster-scoped but the CRD.
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding"}
    assert not [d for d in namespaced if d["kind"] in cluster_scoped]
    [deployment] = [d for d in namespaced if d["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["--namespace=team-a", "--namespace=team-b"]


def test_the_operator_pod_is_restricted() -> None:
    [deployment] = [d for d in render() if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert container["image"] == "ghcr.io/arqfleet/arqfleet-operator:0.1.0"


def test_the_bundle_is_the_chart_rendered() -> None:
    """deploy/arqfleet.yaml: regenerate with `make chart-files`."""
    assert BUNDLE.read_text() == bundle_text()


def bundle_text() -> str:
    script = REPO_ROOT / "hack" / "render-bundle"
    return subprocess.run(
        [str(script), "--stdout"], capture_output=True, text=True, check=True, timeout=60
    ).stdout


# -- against the local apiserver --------------------------------------------------------------


@pytest.fixture(scope="module")
def monitoring_api(kube_crds: ControlPlane) -> Iterator[ControlPlane]:
    """The Prometheus Operator's real CRDs, for this module only (others test their absence)."""
    files = [str(crd_file(kind)) for kind in KINDS]
    for path in files:
        kubectl(kube_crds, "apply", "--server-side", "-f", path)
    for kind in KINDS:
        kubectl(
            kube_crds, "wait", "--for=condition=Established", f"crd/{kind}.monitoring.coreos.com"
        )
    yield kube_crds
    for path in files:
        kubectl(kube_crds, "delete", "-f", path, "--wait=true")


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_every_rendered_object_passes_server_side_validation(
    values: Path, monitoring_api: ControlPlane, namespace: str
) -> None:
    # Rendered into the test's namespace; namespaced mode watches it (its Roles must land in a
    # namespace that exists).
    watch = ["--set", f"rbac.namespaces={{{namespace}}}"] if "namespaced" in values.name else []
    docs = render("-f", str(values), *watch, namespace=namespace)
    manifest = yaml.safe_dump_all(docs)
    applied = kubectl(
        monitoring_api,
        "apply",
        "--server-side",
        "--force-conflicts",
        "--dry-run=server",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=manifest,
        check=False,
    )
    assert applied.returncode == 0, applied.stderr
    assert len(applied.stdout.splitlines()) == len(docs)


def test_the_kubectl_bundle_installs(kube_crds: ControlPlane) -> None:
    """`kubectl apply -f crds/ -f deploy/arqfleet.yaml` installs the operator."""
    created = kubectl(
        kube_crds, "apply", "--server-side", "-f", str(REPO_ROOT / "crds"), "-f", str(BUNDLE)
    )
    try:
        assert "namespace/arqfleet-system serverside-applied" in created.stdout
        assert "deployment.apps/arqfleet serverside-applied" in created.stdout
        assert "clusterrolebinding.rbac.authorization.k8s.io/arqfleet serverside-applied" in (
            created.stdout
        )
    finally:
        kubectl(kube_crds, "delete", "-f", str(BUNDLE), "--wait=true")
