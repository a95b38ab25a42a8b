"""e2e fixtures: a real node for the tier and a namespaced operator per test, on the session's
control plane.

Each test gets its own namespace, its own Redis and its own operator restricted to that
namespace; every test's worker pods run on the one node, from the example image.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from localcluster import ControlPlane
from localnode import Node
from tests.support.jobqueues import jobqueue, minimal_spec
from tests.support.kube import kubectl
from tests.support.operator_process import OperatorProcess, bind_operator_rbac
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_for


@pytest.fixture(scope="package")
def node(kube_crds: ControlPlane, images: dict[str, str]) -> Iterator[Node]:
    """One real node for the tier: containerd + runc + CNI, kubelet and kube-scheduler, and
    kube-proxy (pods reach the API server at its ClusterIP, as the chart's operator must),
    with the example worker image (Dockerfile.worker + examples/Dockerfile) imported."""
    if os.geteuid() != 0:
        pytest.skip("a real node needs root (mounts, cgroups, network namespaces)")
    started = Node(kube_crds, services=True).start()
    try:
        started.load_image(images["example"])
        yield started
    finally:
        started.stop()


@pytest.fixture
def example_image(node: Node, images: dict[str, str]) -> str:
    """The example app's image, on the node: JobQueues run it with imagePullPolicy Never."""
    return images["example"]


@pytest.fixture
def redis_server(node: Node) -> Iterator[RedisServer]:
    """This test's own redis-server, where the node's pods reach the host: the bridge gateway
    (the tests and the operator, on the host, reach it there too)."""
    server = RedisServer(bind=node.gateway)
    server.start()
    yield server
    server.cleanup()


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
