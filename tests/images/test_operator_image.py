"""The operator image against the local apiserver: it starts as a non-root numeric user with a
read-only root filesystem, reconciles a JobQueue into its worker Deployment under the shipped
(namespaced) RBAC alone, and exits 0 on `podman stop`."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest
from kubernetes_asyncio.client import ApiClient

from localcluster import ControlPlane, free_port
from tests.support.containers import Container, Containers, http_status, wait_http_ok
from tests.support.operator_checks import create_jobqueue, get_deployment, ready_condition
from tests.support.operator_process import bind_operator_rbac
from tests.support.waiting import async_wait_for

pytestmark = [pytest.mark.containers, pytest.mark.cluster]

KUBECONFIG_IN_CONTAINER = "/etc/arqfleet/kubeconfig"


def portable_kubeconfig(source: Path, target: Path) -> Path:
    """`source` with its certificate files inlined, so one read-only file mount is enough."""
    config = json.loads(source.read_text())

    def inline(entry: dict[str, str], key: str) -> None:
        entry[f"{key}-data"] = base64.b64encode(Path(entry.pop(key)).read_bytes()).decode()

    for cluster in config["clusters"]:
        inline(cluster["cluster"], "certificate-authority")
    for user in config["users"]:
        inline(user["user"], "client-certificate")
        inline(user["user"], "client-key")
    target.write_text(json.dumps(config))
    # The image's user (uid 10001) reads it through the bind mount; a throwaway test identity.
    target.chmod(0o644)
    return target


def run_operator(
    containers: Containers, image: str, kubeconfig: Path, namespace: str, ports: dict[str, int]
) -> Container:
    return containers.run(
        image,
        "--kubeconfig",
        KUBECONFIG_IN_CONTAINER,
        "--namespace",
        namespace,
        options=[
            "--network=host",  # the apiserver and the redis-server listen on the host's loopback
            "--read-only",
            "--tmpfs=/tmp",
            "--cap-drop=ALL",
            "--security-opt=no-new-privileges",
            f"--volume={kubeconfig}:{KUBECONFIG_IN_CONTAINER}:ro",
            "--env=ARQFLEET_LIVENESS_HOST=127.0.0.1",
            f"--env=ARQFLEET_LIVENESS_PORT={ports['liveness']}",
            f"--env=ARQFLEET_METRICS_PORT={ports['metrics']}",
        ],
    )


async def test_operator_image_reconciles_a_jobqueue(
    images: dict[str, str],
    containers: Containers,
    kube_crds: ControlPlane,
    kube: ApiClient,
    namespace: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    user_kubeconfig = await asyncio.to_thread(bind_operator_rbac, kube_crds, [namespace])
    kubeconfig = portable_kubeconfig(user_kubeconfig, tmp_path / "kubeconfig")
    ports = {"liveness": free_port(), "metrics": free_port()}
    container = await asyncio.to_thread(
        run_operator, containers, images["operator"], kubeconfig, namespace, ports
    )
    await wait_http_ok(container, f"http://127.0.0.1:{ports['liveness']}/healthz", seconds=60)
    assert await http_status(f"http://127.0.0.1:{ports['metrics']}/metrics") == 200

    uid = (await asyncio.to_thread(container.exec, "id", "-u")).strip()
    assert uid.isdigit(), uid
    assert int(uid) != 0

    spec = {
        "redis": {"url": redis_url},
        "worker": {"image": images["example"], "settings": "examples.app.worker.WorkerSettings"},
    }
    await create_jobqueue(kube, namespace, "imaged", spec)
    deployment = await async_wait_for(
        lambda: get_deployment(kube, namespace, "imaged-worker"),
        timeout=30,
        what="the worker Deployment the operator container creates",
    )
    [worker] = deployment["spec"]["template"]["spec"]["containers"]
    assert worker["image"] == images["example"]
    assert deployment["metadata"]["ownerReferences"][0]["name"] == "imaged"
    # Its status writes pass the RBAC too.
    await async_wait_for(
        lambda: ready_condition(kube, namespace, "imaged"),
        timeout=30,
        what="the JobQueue's Ready condition",
    )

    code = await asyncio.to_thread(container.stop, 30)
    assert code == 0, await asyncio.to_thread(container.logs)
