"""The whole path, nothing faked: JobQueue -> operator -> Deployment -> kube-controller-manager ->
ReplicaSet -> pod -> kube-scheduler -> kubelet + containerd -> the example image (our
Dockerfiles) -> `arqfleet-worker` -> jobs from a real Redis.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from arq import create_pool
from arq.connections import RedisSettings
from kubernetes_asyncio.client import ApiClient, CoreV1Api, CustomObjectsApi, V1ObjectMeta, V1Secret

from arqfleet.operator import models
from arqfleet.worker.constants import heartbeats_key
from localnode import Node
from tests.support.kube import kubectl_binary
from tests.support.operator_checks import (
    create_jobqueue,
    get_jobqueue,
    list_pods,
    ready_condition,
)
from tests.support.operator_process import OperatorProcess
from tests.support.waiting import async_wait_for

pytestmark = pytest.mark.cluster

EXAMPLE_SETTINGS = "examples.app.worker.WorkerSettings"
# Ready needs: operator apply -> ReplicaSet -> schedule -> container start -> the readiness probe.
READY_TIMEOUT = 40


def fleet_spec(
    image: str, redis_url: str, settings: str = EXAMPLE_SETTINGS, **worker: Any
) -> dict[str, Any]:
    return {
        "redis": {"url": redis_url},
        "worker": {
            "image": image,
            "imagePullPolicy": "Never",  # imported into the node's containerd: no registry here
            "settings": settings,
            "jobTimeoutSeconds": 5,
            "drainSeconds": 5,
            **worker,
        },
        "scaling": {"minReplicas": 1, "maxReplicas": 1, "pollSeconds": 1},
    }


async def wait_ready(api: ApiClient, namespace: str, name: str) -> dict[str, Any]:
    async def ready() -> dict[str, Any] | None:
        condition = await ready_condition(api, namespace, name)
        return condition if condition and condition["status"] == "True" else None

    return await async_wait_for(ready, timeout=READY_TIMEOUT, what=f"JobQueue {name} Ready")


async def test_jobqueue_runs_a_real_worker_that_processes_jobs(
    kube: ApiClient,
    namespace: str,
    node: Node,
    example_image: str,
    e2e_operator: OperatorProcess,
    redis_url: str,
) -> None:
    await create_jobqueue(kube, namespace, "fleet", fleet_spec(example_image, redis_url))

    condition = await wait_ready(kube, namespace, "fleet")
    assert condition["reason"] == "WorkersAvailable", condition
    jq = await get_jobqueue(kube, namespace, "fleet")
    assert jq is not None
    assert jq["status"]["readyReplicas"] == 1, jq["status"]

    [pod] = await list_pods(kube, namespace, "fleet")
    assert pod["spec"]["nodeName"] == node.name  # placed by kube-scheduler
    assert pod["status"]["phase"] == "Running"
    assert ipaddress.ip_address(pod["status"]["podIP"]) in ipaddress.ip_network(node.subnet)
    [container] = pod["status"]["containerStatuses"]
    assert container["ready"] is True  # the kubelet's own readiness probe passed
    assert container["restartCount"] == 0
    assert "running" in container["state"]
    assert container["image"].endswith(example_image.split("/", 1)[1]), container

    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    try:
        jobs = [await pool.enqueue_job("fast", f"fast-{i}") for i in range(5)]
        jobs.append(await pool.enqueue_job("slow", "slow-0", seconds=0.2))
        results = [await job.result(timeout=20, poll_delay=0.1) for job in jobs if job]
    finally:
        await pool.aclose()
    assert results == [*(f"fast-{i}" for i in range(5)), "slow-0"]

    # The pod name reached the worker through the downward API (fieldRef metadata.name).
    client = aioredis.Redis.from_url(redis_url)
    try:
        beating = await client.hkeys(heartbeats_key("arq:queue"))
    finally:
        await client.aclose()
    assert [b.decode() for b in beating] == [pod["metadata"]["name"]]


async def test_settings_typo_reports_worker_settings_not_found(
    kube: ApiClient,
    namespace: str,
    example_image: str,
    e2e_operator: OperatorProcess,
    redis_url: str,
) -> None:
    typo = "examples.app.wrker.WorkerSettings"
    await create_jobqueue(kube, namespace, "typo", fleet_spec(example_image, redis_url, typo))
    await create_jobqueue(kube, namespace, "good", fleet_spec(example_image, redis_url))

    async def crash_looping() -> dict[str, Any] | None:
        for pod in await list_pods(kube, namespace, "typo"):
            for status in (pod.get("status") or {}).get("containerStatuses") or ():
                waiting = status["state"].get("waiting") or {}
                if waiting.get("reason") == "CrashLoopBackOff" and status["restartCount"] >= 1:
                    return dict(status)
        return None

    # What kubelet would report, and what status.pod_problem reads: exit code 2 in lastState,
    # the worker's own last words as the message (FallbackToLogsOnError), a growing restartCount.
    status = await async_wait_for(crash_looping, timeout=READY_TIMEOUT, what="typo crash-looping")
    terminated = status["lastState"]["terminated"]
    assert terminated["exitCode"] == 2, status
    assert f"cannot import '{typo}'" in terminated["message"]
    assert status["ready"] is False

    # The other JobQueue in the namespace is unaffected.
    good = await wait_ready(kube, namespace, "good")
    assert good["reason"] == "WorkersAvailable"

    async def settings_not_found() -> dict[str, Any] | None:
        condition = await ready_condition(kube, namespace, "typo")
        if condition and condition["reason"] == "WorkerSettingsNotFound":
            return condition
        return None

    condition = await async_wait_for(
        settings_not_found, timeout=15, what="typo: Ready=False WorkerSettingsNotFound"
    )
    assert condition["status"] == "False"
    assert typo in condition["message"]
    assert "no module named 'examples.app.wrker'" in condition["message"]


async def test_redis_url_from_a_secret_that_appears_later(
    kube: ApiClient,
    namespace: str,
    example_image: str,
    e2e_operator: OperatorProcess,
    redis_url: str,
) -> None:
    spec = fleet_spec(example_image, redis_url)
    spec["redis"] = {"urlSecretRef": {"name": "redis-credentials", "key": "url"}}
    await create_jobqueue(kube, namespace, "secret", spec)

    async def config_error() -> dict[str, Any] | None:
        for pod in await list_pods(kube, namespace, "secret"):
            for status in (pod.get("status") or {}).get("containerStatuses") or ():
                waiting = status["state"].get("waiting") or {}
                if waiting.get("reason") == "CreateContainerConfigError":
                    return dict(waiting)
        return None

    # As kubelet: the container cannot start while the Secret its env names is missing.
    waiting = await async_wait_for(config_error, timeout=READY_TIMEOUT, what="config error")
    assert waiting["message"] == 'secret "redis-credentials" not found'
    condition = await ready_condition(kube, namespace, "secret")
    assert condition is not None
    assert condition["reason"] == "RedisSecretMissing", condition

    secret = V1Secret(
        metadata=V1ObjectMeta(name="redis-credentials"), string_data={"url": redis_url}
    )
    await CoreV1Api(kube).create_namespaced_secret(namespace, secret)
    ready = await wait_ready(kube, namespace, "secret")
    assert ready["reason"] == "WorkersAvailable"
    [pod] = await list_pods(kube, namespace, "secret")
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0  # started, never crashed

    # The worker reached Redis through the URL it was given by the Secret.
    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    try:
        job = await pool.enqueue_job("fast", "via-secret")
        assert job is not None
        assert await job.result(timeout=20, poll_delay=0.1) == "via-secret"
    finally:
        await pool.aclose()


@pytest.mark.usefixtures("gc_watches_jobqueues")
async def test_deleting_the_jobqueue_drains_the_worker_before_the_pod_goes(
    kube: ApiClient,
    namespace: str,
    example_image: str,
    e2e_operator: OperatorProcess,
    redis_url: str,
) -> None:
    drain = 10  # terminationGracePeriodSeconds = drain + 15
    # The example app's once-a-minute cron job made it "2 to be completed" whenever the test
    # straddled a minute boundary: this test is about the one in-flight job.
    no_cron = [{"name": "EXAMPLE_CRON_EVERY_SECONDS", "value": "0"}]
    spec = fleet_spec(
        example_image, redis_url, jobTimeoutSeconds=drain, drainSeconds=drain, env=no_cron
    )
    await create_jobqueue(kube, namespace, "drained", spec)
    await wait_ready(kube, namespace, "drained")
    [pod] = await list_pods(kube, namespace, "drained")
    pod_name = pod["metadata"]["name"]
    assert pod["spec"]["terminationGracePeriodSeconds"] == drain + 15
    # The container's log, streamed through the apiserver from the kubelet until it exits
    # (the pod's log is gone with the pod).
    follower = await asyncio.create_subprocess_exec(
        kubectl_binary(), "--kubeconfig", str(e2e_operator.plane.kubeconfig),
        "-n", namespace, "logs", "-f", pod_name,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip

    client = aioredis.Redis.from_url(redis_url)
    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    try:
        # Long enough to still run when the pod gets its deletionTimestamp: the garbage
        # collector's cascade JobQueue -> Deployment -> ReplicaSet -> pod takes a few seconds.
        job = await pool.enqueue_job("slow", "in-flight", seconds=drain - 2)
        assert job is not None

        async def started() -> bool:
            return bool(await client.lrange("example:started", 0, -1))

        await async_wait_for(started, timeout=15, what="the slow job to start")
        deleted_at = time.monotonic()
        await CustomObjectsApi(kube).delete_namespaced_custom_object(
            models.API_GROUP, models.API_VERSION, namespace, models.PLURAL, "drained"
        )

        async def terminating() -> bool:
            return any(
                p["metadata"].get("deletionTimestamp")
                for p in await list_pods(kube, namespace, "drained")
            )

        await async_wait_for(terminating, timeout=drain - 2, what="the pod's deletionTimestamp")
        assert await client.lrange("example:done", 0, -1) == []  # SIGTERM comes mid-job

        async def pod_gone() -> bool:
            return not await list_pods(kube, namespace, "drained")

        # The kubelet SIGTERMs, the worker finishes the job and exits, the pod goes.
        await async_wait_for(pod_gone, timeout=drain + 20, what="the worker pod to go")
        elapsed = time.monotonic() - deleted_at
        assert await job.result(timeout=5, poll_delay=0.1) == "in-flight"
        assert await client.lrange("example:done", 0, -1) == [b"in-flight"]
        assert await client.lrange("example:started", 0, -1) == [b"in-flight"]  # not re-run
    finally:
        await pool.aclose()
        await client.aclose()
        try:  # the stream ends with the container
            streamed, _ = await asyncio.wait_for(follower.communicate(), timeout=10)
        finally:
            if follower.returncode is None:
                follower.kill()

    # Drained, not waited out: gone well before the grace period (and the kubelet's SIGKILL).
    assert elapsed < drain + 15, elapsed
    # arq's own account of the drain: SIGTERM arrived with the job still running.
    log = streamed.decode()
    assert "shutdown on SIGTERM" in log, log
    assert "1 to be completed" in log, log
