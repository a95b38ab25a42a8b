"""e2e fixtures: a node agent and a namespaced operator per test, on the session's control plane.

Each test gets its own namespace, its own fake node (the agent manages only that namespace, so
tests never run each other's pods) and its own operator restricted to that namespace.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcluster import ControlPlane, is_running
from tests.support.jobqueues import jobqueue, minimal_spec
from tests.support.kube import kubectl
from tests.support.nodeagent_process import NodeAgentProcess
from tests.support.operator_process import OperatorProcess, bind_operator_rbac
from tests.support.waiting import wait_for


@pytest.fixture
def node_agent(
    kube_crds: ControlPlane, namespace: str, tmp_path: Path
) -> Iterator[NodeAgentProcess]:
    agent = NodeAgentProcess(
        kube_crds, node=f"node-{namespace}", workdir=tmp_path / "agent", namespaces=[namespace]
    )
    agent.start()
    yield agent
    # Exit 0 after stopping its worker processes: nothing of this test keeps running.
    assert agent.stop() == 0, agent.log()
    assert "node agent stopped" in agent.log()
    assert agent.started_pids(), agent.log()  # every test here runs at least one worker
    assert [pid for pid in agent.started_pids() if is_running(pid)] == []


@pytest.fixture
def operator_env() -> dict[str, str]:
    """Extra ARQFLEET_* environment for `e2e_operator` (a test module may override this)."""
    return {}


@pytest.fixture
def e2e_operator(
    kube_crds: ControlPlane, namespace: str, operator_env: dict[str, str]
) -> Iterator[OperatorProcess]:
    """The real operator, bound to the shipped namespaced RBAC, watching this namespace only."""
    kubeconfig = bind_operator_rbac(kube_crds, [namespace], user=f"arqfleet-op-e2e-{namespace}")
    process = OperatorProcess(kube_crds, kubeconfig, namespaces=[namespace], env=operator_env)
    process.start()
    yield process
    assert process.stop() == 0, process.log()


@pytest.fixture(scope="session")
def gc_watches_jobqueues(kube_crds: ControlPlane) -> None:
    """Wait until kube-controller-manager's garbage collector acts on JobQueue deletions.

    It starts watching a new CRD's objects only at its next discovery sync (every 30 s, not
    configurable), so a JobQueue deleted just after the CRD was installed keeps its Deployment
    for up to 30 s. A canary ConfigMap owned by a canary JobQueue shows when that is over.
    """
    canary = "e2e-gc-canary"
    kubectl(kube_crds, "create", "namespace", canary, check=False)
    created = kubectl(
        kube_crds,
        "-n",
        canary,
        "create",
        "-o",
        "json",
        "-f",
        "-",
        stdin=json.dumps(jobqueue(canary, minimal_spec())),
    )
    uid = json.loads(created.stdout)["metadata"]["uid"]
    owner = {"apiVersion": "arqfleet.io/v1alpha1", "kind": "JobQueue", "name": canary, "uid": uid}
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": canary, "ownerReferences": [owner]},
    }
    kubectl(kube_crds, "-n", canary, "create", "-f", "-", stdin=json.dumps(config_map))
    kubectl(kube_crds, "-n", canary, "delete", "jobqueue", canary, "--wait=false")

    def collected() -> bool:
        found = kubectl(kube_crds, "-n", canary, "get", "configmap", canary, check=False)
        return found.returncode != 0 and "NotFound" in found.stderr

    wait_for(collected, timeout=60, interval=0.5, what="the GC to collect a JobQueue's dependent")
    kubectl(kube_crds, "delete", "namespace", canary, "--wait=false")
