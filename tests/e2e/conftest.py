"""e2e fixtures: a node agent and a namespaced operator per test, on the session's control plane.

Each test gets its own namespace, its own fake node (the agent manages only that namespace, so
tests never run each other's pods) and its own operator restricted to that namespace.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from localcluster import ControlPlane
from tests.support.nodeagent_process import NodeAgentProcess
from tests.support.operator_process import OperatorProcess, bind_operator_rbac


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


@pytest.fixture
def e2e_operator(kube_crds: ControlPlane, namespace: str) -> Iterator[OperatorProcess]:
    """The real operator, bound to the shipped namespaced RBAC, watching this namespace only."""
    kubeconfig = bind_operator_rbac(kube_crds, [namespace], user=f"arqfleet-op-e2e-{namespace}")
    process = OperatorProcess(kube_crds, kubeconfig, namespaces=[namespace])
    process.start()
    yield process
    assert process.stop() == 0, process.log()
