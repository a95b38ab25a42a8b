"""`helm install` as a user runs it: the chart's operator pod, from our operator image, on the
real node. It reaches the API server at the `kubernetes` Service's ClusterIP (kube-proxy, the
node's relay), authenticates with its ServiceAccount's projected token, is allowed exactly the
chart's RBAC, and scales a JobQueue whose worker pods process real jobs on the same node."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from arq import create_pool
from arq.connections import RedisSettings
from kubernetes_asyncio.client import ApiClient

from arqfleet.operator import crd
from localcluster import ControlPlane
from localnode import Node
from tests.support.helm import CHART, helm
from tests.support.kube import kubectl
from tests.support.operator_checks import create_jobqueue, get_deployment, ready_condition
from tests.support.waiting import async_wait_for, wait_for

pytestmark = pytest.mark.cluster

# Two at a time per pod, three pods: a few seconds of work. (At 10 at a time per pod, under
# CI load a job's own Redis connection once missed arq's 1 s connect timeout and the job
# failed: thirty connections opened at once by pods still starting on 2 busy cores.)
JOBS = 12
# A pod's start on the node (scheduling, sandbox, container), then the operator's own start.
OPERATOR_TIMEOUT = 90


@pytest.fixture(scope="package")
def operator_image(node: Node, images: dict[str, str]) -> str:
    """The operator image (Dockerfile.operator), imported into the node once for the tier."""
    node.load_image(images["operator"])
    return images["operator"]


def operator_pod(plane: ControlPlane, namespace: str, release: str) -> dict[str, Any] | None:
    selector = f"app.kubernetes.io/instance={release}"
    listed = kubectl(plane, "-n", namespace, "get", "pods", "-l", selector, "-o", "json")
    pods: list[dict[str, Any]] = json.loads(listed.stdout)["items"]
    running = [p for p in pods if p.get("status", {}).get("phase") == "Running"]
    ready = [
        p for p in running if all(c.get("ready") for c in p["status"].get("containerStatuses", []))
    ]
    return ready[0] if len(ready) == 1 else None


@pytest.mark.parametrize("mode", ["clusterwide", "namespaced"])
async def test_the_charts_operator_pod_scales_a_jobqueue_on_the_node(
    mode: str,
    kube: ApiClient,
    kube_crds: ControlPlane,
    node: Node,
    operator_image: str,
    example_image: str,
    namespace: str,
    redis_url: str,
) -> None:
    release = f"af-{mode[:4]}-{namespace[2:]}"
    repository, tag = operator_image.rsplit(":", 1)
    install = ["upgrade", "--install", release, str(CHART), "--namespace", namespace]
    install += ["--set", f"image.repository={repository}", "--set", f"image.tag={tag}"]
    # Imported into the node's containerd: no registry answers here.
    install += ["--set", "image.pullPolicy=Never", "--set", "operator.verbose=false"]
    if mode == "namespaced":
        install += ["--set", f"rbac.namespaces={{{namespace}}}", "--set", "crds.install=false"]
    else:
        # The session's CRD is already installed (kubectl apply): the release adopts it, and
        # keeps it on uninstall (crds.keep), as a user upgrading from kubectl would.
        install += ["--take-ownership"]
    installed = helm(kube_crds, *install, check=False)
    assert installed.returncode == 0, installed.stderr
    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    try:
        pod = wait_for(
            lambda: operator_pod(kube_crds, namespace, release),
            timeout=OPERATOR_TIMEOUT,
            interval=0.5,
            what="the chart's operator pod Ready",
        )
        assert pod["spec"]["nodeName"] == node.name
        assert pod["spec"]["serviceAccountName"] == f"{release}-arqfleet"

        jobs = [await pool.enqueue_job("slow", f"j{i}", 1.0) for i in range(JOBS)]
        spec = {
            "redis": {"url": redis_url},
            "worker": {
                "image": example_image,
                "imagePullPolicy": "Never",
                "settings": "examples.app.worker.WorkerSettings",
                "maxJobs": 2,
                "jobTimeoutSeconds": 5,
                "drainSeconds": 5,
            },
            "scaling": {"maxReplicas": 3, "pollSeconds": 1},
        }
        await create_jobqueue(kube, namespace, "q", spec)

        async def scaled() -> bool:
            found = await get_deployment(kube, namespace, "q-worker")
            return bool(found and found["spec"]["replicas"] == 3)

        await async_wait_for(scaled, timeout=OPERATOR_TIMEOUT, what="the JobQueue scaled to 3")
        # The worker pods on the node run every job.
        for i, job in enumerate(jobs):
            assert job is not None
            assert await job.result(timeout=120) == f"j{i}"
        condition = await ready_condition(kube, namespace, "q", "RedisReachable")
        assert condition is not None
        assert condition["status"] == "True"

        logs = kubectl(kube_crds, "-n", namespace, "logs", pod["metadata"]["name"]).stdout
        # RBAC's refusal names the identity. (Not any 403: a cluster-wide operator also sees
        # other tests' JobQueues in namespaces being deleted, where creating is Forbidden.)
        assert not re.search(r'forbidden: User \\?"system:serviceaccount:', logs), logs
        upgraded = helm(kube_crds, *install, "--set", "operator.logFormat=text", check=False)
        assert upgraded.returncode == 0, upgraded.stderr
    finally:
        await pool.aclose()
        uninstalled = helm(kube_crds, "uninstall", release, "--namespace", namespace, check=False)
    assert uninstalled.returncode == 0, uninstalled.stderr
    # Nothing of the release is left but the kept CRD.
    selector = f"app.kubernetes.io/instance={release}"
    left = kubectl(
        kube_crds,
        "get",
        "deploy,sa,svc,role,rolebinding,clusterrole,clusterrolebinding",
        "-A",
        "-l",
        selector,
        "-o",
        "name",
    ).stdout.split()
    assert left == []
    kubectl(kube_crds, "get", f"crd/{crd.CRD_NAME}")
