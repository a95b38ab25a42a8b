"""Faults around the operator, for real: a slow Redis, a Redis down for a minute and
restarted, and the API server restarted under load."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from arq.connections import RedisSettings, create_pool
from kubernetes_asyncio.client import ApiClient

from arqfleet.operator.crd import CRD_NAME
from localcluster import ControlPlane
from tests.support.kube import REPO_ROOT, api_client, kubectl
from tests.support.operator_checks import (
    create_jobqueue,
    get_deployment,
    get_jobqueue,
    ready_condition,
)
from tests.support.operator_process import OperatorProcess, bind_operator_rbac
from tests.support.redis_server import RedisServer
from tests.support.slow_proxy import SlowProxy
from tests.support.waiting import async_wait_for

pytestmark = pytest.mark.cluster


def spec(url: str, **scaling: Any) -> dict[str, Any]:
    return {
        "redis": {"url": url},
        "worker": {"image": "app:1", "settings": "app.worker.WorkerSettings"},
        "scaling": {"maxReplicas": 3, "pollSeconds": 1, **scaling},
    }


@pytest.fixture
def fault_operator(kube_crds: ControlPlane, namespace: str) -> Iterator[OperatorProcess]:
    kubeconfig = bind_operator_rbac(kube_crds, [namespace], user=f"arqfleet-op-faults-{namespace}")
    process = OperatorProcess(
        kube_crds,
        kubeconfig,
        namespaces=[namespace],
        env={"ARQFLEET_PROBE_TIMEOUT_SECONDS": "1"},
    )
    process.start()
    yield process
    assert process.stop() == 0, process.log()


async def backlog(url: str, jobs: int) -> None:
    pool = await create_pool(RedisSettings.from_dsn(url))
    for i in range(jobs):
        await pool.enqueue_job("fast", f"j{i}")
    await pool.aclose()


async def replicas(kube: ApiClient, namespace: str, name: str) -> int | None:
    found = await get_deployment(kube, namespace, f"{name}-worker")
    return None if found is None else int(found["spec"]["replicas"])


async def condition(kube: ApiClient, namespace: str, name: str, status: str) -> bool:
    found = await ready_condition(kube, namespace, name, "RedisReachable")
    return bool(found and found["status"] == status)


async def test_a_slow_redis_times_out_its_own_queue_and_the_others_keep_scaling(
    kube: ApiClient, namespace: str, fault_operator: OperatorProcess
) -> None:
    slow_server, fast_server = RedisServer(), RedisServer()
    slow_server.start()
    fast_server.start()
    # 3 s per hop, both ways: far past the operator's 1 s probe deadline.
    proxy = await SlowProxy(slow_server.port, delay_seconds=3.0).start()
    try:
        await backlog(slow_server.url, 25)
        await create_jobqueue(kube, namespace, "slow", spec(f"redis://127.0.0.1:{proxy.port}/0"))
        await create_jobqueue(kube, namespace, "fast", spec(fast_server.url))
        await backlog(fast_server.url, 25)

        async def fast_scaled() -> bool:
            return await replicas(kube, namespace, "fast") == 3

        await async_wait_for(fast_scaled, timeout=30, what="the fast queue scaled to 3")
        await async_wait_for(
            lambda: condition(kube, namespace, "slow", "False"),
            timeout=30,
            what="the slow queue's RedisReachable=False",
        )
        # Never read, never scaled: its 25 waiting jobs did not move it off minReplicas.
        assert await replicas(kube, namespace, "slow") == 0
    finally:
        await proxy.stop()
        slow_server.cleanup()
        fast_server.cleanup()


async def test_redis_down_a_minute_freezes_replicas_then_scaling_resumes(
    kube: ApiClient, namespace: str, fault_operator: OperatorProcess
) -> None:
    server = RedisServer(persistent=True)
    server.start()
    try:
        await backlog(server.url, 25)
        await create_jobqueue(
            kube, namespace, "q", spec(server.url, scaleDown={"stabilizationSeconds": 0})
        )

        async def at(count: int) -> bool:
            return await replicas(kube, namespace, "q") == count

        await async_wait_for(lambda: at(3), timeout=30, what="3 replicas")
        server.stop()  # a real stop: the process is gone, connections refused
        down_since = time.monotonic()
        await async_wait_for(
            lambda: condition(kube, namespace, "q", "False"), timeout=20, what="unreachable"
        )
        seen: set[int | None] = set()

        async def a_minute_down() -> bool:
            seen.add(await replicas(kube, namespace, "q"))
            return time.monotonic() - down_since >= 60

        # Held for the whole minute: never scaled down (and never to zero) in the dark.
        await async_wait_for(a_minute_down, timeout=90, interval=0.5, what="a minute of outage")
        assert seen == {3}
        server.start()  # the same port and data directory: the 25 jobs are still there
        await async_wait_for(
            lambda: condition(kube, namespace, "q", "True"), timeout=30, what="reachable again"
        )
        # Scaling resumes from what Redis really holds: the queue is emptied, the fleet follows
        # (down from 3; at zero it may wake one worker to learn the cron schedule, which no
        # pod here ever publishes).
        drained = await create_pool(RedisSettings.from_dsn(server.url))
        await drained.delete("arq:queue")
        await drained.aclose()

        async def scaled_down() -> bool:
            count = await replicas(kube, namespace, "q")
            return count is not None and count < 3

        await async_wait_for(scaled_down, timeout=30, what="a scale-down after the outage")
    finally:
        server.cleanup()


@pytest.fixture
def own_plane() -> Iterator[ControlPlane]:
    """A control plane of this test's own: restarting the session's would disturb others."""
    plane = ControlPlane(with_controller_manager=True)
    try:
        plane.start()
        kubectl(plane, "apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
        kubectl(plane, "wait", "--for=condition=Established", f"crd/{CRD_NAME}")
        kubectl(plane, "create", "namespace", "faults")
        yield plane
    finally:
        plane.cleanup()


async def test_the_operator_rides_out_an_api_server_restart(
    own_plane: ControlPlane, redis_server: RedisServer
) -> None:
    kubeconfig = bind_operator_rbac(own_plane, ["faults"], user="arqfleet-op-restart")
    operator = OperatorProcess(own_plane, kubeconfig, namespaces=["faults"])
    operator.start()
    api = await api_client(own_plane)
    try:
        await backlog(redis_server.url, 15)
        await create_jobqueue(api, "faults", "q", spec(redis_server.url))

        async def at(count: int) -> bool:
            return await replicas(api, "faults", "q") == count

        await async_wait_for(lambda: at(2), timeout=30, what="2 replicas before")
        await asyncio.to_thread(own_plane.restart_apiserver)
        # Under load after the restart: the watches and the scaling loop carry on by themselves.
        await backlog(redis_server.url, 20)  # 35 waiting: 4 wanted, 3 allowed
        await async_wait_for(lambda: at(3), timeout=60, what="3 replicas after the restart")
        jq = await get_jobqueue(api, "faults", "q")
        assert jq is not None
        assert jq["status"]["queue"]["ready"] == 35
        assert operator.popen is not None
        assert operator.popen.poll() is None, operator.log()
    finally:
        await api.close()
        assert operator.stop() == 0, operator.log()


async def test_sigkill_during_a_scale_up_keeps_the_step_policy_across_the_restart(
    kube: ApiClient, namespace: str, fault_operator: OperatorProcess, redis_url: str
) -> None:
    """The scale steps of the current period live in status.history: an operator killed right
    after stepping 0 -> 4 must not step again before the period is over (nothing twice)."""
    period = 30
    await backlog(redis_url, 200)  # wants 20
    await create_jobqueue(
        kube,
        namespace,
        "q",
        spec(redis_url, maxReplicas=20, scaleUp={"maxPods": 4, "periodSeconds": period}),
    )

    async def stepped() -> bool:
        return await replicas(kube, namespace, "q") == 4

    await async_wait_for(stepped, timeout=30, what="the first step, 0 -> 4")
    stepped_at = time.monotonic()
    assert fault_operator.popen is not None
    fault_operator.popen.kill()  # SIGKILL: nothing is flushed on the way out
    fault_operator.popen.wait(timeout=10)
    await asyncio.to_thread(fault_operator.start)
    seen: dict[float, int | None] = {}

    async def next_step() -> bool:
        count = await replicas(kube, namespace, "q")
        seen[time.monotonic() - stepped_at] = count
        return count == 8

    await async_wait_for(next_step, timeout=period + 30, interval=0.25, what="the next step")
    early = {at: count for at, count in seen.items() if at < period - 1 and count != 4}
    assert not early, f"stepped again within the period after the restart: {early}"
    assert max(seen) >= period - 1
