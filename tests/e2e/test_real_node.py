"""What only a real kubelet can show: an image the kubelet refuses to run, its liveness probe
restarting a worker that stopped answering, and its SIGKILL when a worker outlives
terminationGracePeriodSeconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient, CoreV1Api

import containerimages
from localnode import Node
from tests.support.operator_checks import create_jobqueue, list_pods, ready_condition
from tests.support.operator_process import OperatorProcess
from tests.support.waiting import async_wait_for

pytestmark = pytest.mark.cluster

EXAMPLE_SETTINGS = "examples.app.worker.WorkerSettings"
NAMED_USER_IMAGE = "localhost/arqfleet-named-user:dev"


def spec(image: str, redis_url: str, drain: int = 5) -> dict[str, Any]:
    return {
        "redis": {"url": redis_url},
        "worker": {
            "image": image,
            "imagePullPolicy": "Never",  # imported into the node's containerd: no registry here
            "settings": EXAMPLE_SETTINGS,
            "jobTimeoutSeconds": drain,
            "drainSeconds": drain,
            "env": [{"name": "EXAMPLE_CRON_EVERY_SECONDS", "value": "0"}],
        },
        "scaling": {"minReplicas": 1, "maxReplicas": 1, "pollSeconds": 1},
    }


@pytest.fixture(scope="module")
def named_user_image(node: Node, images: dict[str, str]) -> str:
    """The example image as many users' Dockerfiles end: `USER <name>` (here the image's own
    arqfleet user, UID 10001), not a number. Only the image config changes: no RUN, no network."""
    with tempfile.TemporaryDirectory(prefix="arqfleet-named-user-") as context:
        Path(context, "Containerfile").write_text(f"FROM {images['example']}\nUSER arqfleet\n")
        subprocess.run(
            ["podman", "build", "--quiet", "--pull=never", "--network=none",
             "--tag", NAMED_USER_IMAGE, context],
            env=containerimages.podman_env(), capture_output=True, text=True,
            timeout=300, check=True,
        )  # fmt: skip
    node.load_image(NAMED_USER_IMAGE)
    return NAMED_USER_IMAGE


async def test_an_image_with_a_named_user_is_refused_and_reported_on_the_jobqueue(
    kube: ApiClient,
    namespace: str,
    named_user_image: str,
    e2e_operator: OperatorProcess,
    redis_url: str,
) -> None:
    await create_jobqueue(kube, namespace, "named", spec(named_user_image, redis_url))

    async def refused() -> dict[str, Any] | None:
        condition = await ready_condition(kube, namespace, "named")
        return condition if condition and condition["reason"] == "ImageUserNotNumeric" else None

    # The restricted context's runAsNonRoot: the kubelet cannot prove a user name is not root.
    condition = await async_wait_for(refused, timeout=60, what="Ready=False ImageUserNotNumeric")
    assert condition["status"] == "False"
    assert f"{named_user_image} runs as the user name 'arqfleet'" in condition["message"]
    assert "USER 10001" in condition["message"]
    [pod] = await list_pods(kube, namespace, "named")
    [status] = pod["status"]["containerStatuses"]
    assert status["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    assert "non-numeric user (arqfleet)" in status["state"]["waiting"]["message"]


def timestamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


async def test_a_worker_that_stops_answering_is_killed_at_the_grace_period_and_restarted(
    kube: ApiClient,
    namespace: str,
    node: Node,
    example_image: str,
    e2e_operator: OperatorProcess,
    redis_url: str,
) -> None:
    drain = 1  # terminationGracePeriodSeconds = drain + 15
    await create_jobqueue(kube, namespace, "hung", spec(example_image, redis_url, drain))

    async def one_ready_pod() -> dict[str, Any] | None:
        pods = await list_pods(kube, namespace, "hung")
        statuses = [s for p in pods for s in (p.get("status") or {}).get("containerStatuses") or ()]
        return pods[0] if len(pods) == 1 and statuses and statuses[0]["ready"] else None

    pod = await async_wait_for(one_ready_pod, timeout=60, what="the worker Ready")
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    assert grace == drain + 15
    # A worker hung for good (no event loop, no signal handler): stopped by the kernel. Its
    # socket still accepts, but /healthz never answers, and SIGTERM stays pending.
    [pid] = node.container_pids(b"arqfleet-worker", pod_uid=pod["metadata"]["uid"])
    os.kill(pid, signal.SIGSTOP)
    stopped = time.time()

    async def restarted() -> dict[str, Any] | None:
        [current] = await list_pods(kube, namespace, "hung")
        [status] = current["status"]["containerStatuses"]
        return dict(status) if status["restartCount"] >= 1 else None

    # livenessProbe: every 10 s, 3 failures -> kill (grace 16 s) -> restart.
    status = await async_wait_for(restarted, timeout=120, what="the kubelet's restart")
    terminated = status["lastState"]["terminated"]
    assert terminated["exitCode"] == 137, terminated  # 128 + SIGKILL: SIGTERM did nothing

    events = await CoreV1Api(kube).list_namespaced_event(
        namespace, field_selector=f"involvedObject.uid={pod['metadata']['uid']}"
    )
    unhealthy = [e.message for e in events.items if e.reason == "Unhealthy"]
    assert any(m.startswith("Liveness probe failed") for m in unhealthy), unhealthy
    [killing] = [e for e in events.items if e.reason == "Killing"]
    assert "failed liveness probe, will be restarted" in killing.message
    # The kubelet waited out the whole grace period before its SIGKILL (second resolution).
    killed_at = (killing.first_timestamp or killing.event_time).timestamp()
    waited = timestamp(terminated["finishedAt"]) - killed_at
    print(
        f"\nliveness kill {killed_at - stopped:.0f}s after the worker stopped, SIGKILL "
        f"{waited:.0f}s after the kill began (terminationGracePeriodSeconds {grace})"
    )
    assert grace - 1 <= waited <= grace + 3, (waited, grace)
    # Three failed probes ten seconds apart (event times are truncated to the second).
    assert killed_at - stopped >= 18, killed_at - stopped

    # The new container serves again, and the JobQueue says so.
    async def ready_again() -> dict[str, Any] | None:
        condition = await ready_condition(kube, namespace, "hung")
        return condition if condition and condition["status"] == "True" else None

    await async_wait_for(ready_again, timeout=60, what="Ready again after the restart")
