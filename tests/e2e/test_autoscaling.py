"""Autoscaling end to end: the real operator scales real `arqfleet-worker` pods (the example
image, on a real kubelet) from a real Redis, with kube-controller-manager's ReplicaSets deleting
pods and the kubelet stopping them.

Every scenario counts its jobs: each enqueued tag must be done exactly once.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as aioredis
from arq.connections import ArqRedis
from kubernetes_asyncio.client import ApiClient

from arqfleet.operator.redis_pools import pool_id
from arqfleet.worker.constants import (
    cron_next_key,
    heartbeats_key,
    live_heartbeats,
    redis_time_ms,
)
from tests.support.kube import kubectl, merge_patch_jobqueue, table_rows
from tests.support.operator_checks import (
    create_jobqueue,
    event_reasons,
    get_deployment,
    get_jobqueue,
    list_pods,
    ready_condition,
)
from tests.support.operator_process import OperatorProcess
from tests.support.redis_server import RedisServer
from tests.support.waiting import async_wait_for

pytestmark = pytest.mark.cluster

EXAMPLE_SETTINGS = "examples.app.worker.WorkerSettings"
NO_CRON = {"name": "EXAMPLE_CRON_EVERY_SECONDS", "value": "0"}


def spec(image: str, redis_url: str, scaling: dict[str, Any], **worker: Any) -> dict[str, Any]:
    return {
        "redis": {"url": redis_url},
        "worker": {
            "image": image,
            "imagePullPolicy": "Never",  # imported into the node's containerd: no registry here
            "settings": EXAMPLE_SETTINGS,
            "jobTimeoutSeconds": 30,
            "drainSeconds": 30,
            "env": [NO_CRON],
            **worker,
        },
        "scaling": {"pollSeconds": 1, **scaling},
    }


async def replicas(api: ApiClient, namespace: str, name: str) -> int | None:
    found = await get_deployment(api, namespace, f"{name}-worker")
    return None if found is None else int(found["spec"]["replicas"])


async def wait_replicas(
    api: ApiClient,
    namespace: str,
    name: str,
    wanted: Callable[[int], bool],
    *,
    within: float,
    what: str,
) -> int:
    async def check() -> int | None:
        count = await replicas(api, namespace, name)
        return count if count is not None and wanted(count) else None

    # A count of 0 is falsy: wrap it so that the wait sees it.
    async def boxed() -> list[int] | None:
        count = await check()
        return None if count is None else [count]

    [found] = await async_wait_for(boxed, timeout=within, interval=0.1, what=what)
    return found


@dataclass
class Timeline:
    """spec.replicas of a Deployment, sampled every 0.1 s: (monotonic time, replicas)."""

    samples: list[tuple[float, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def first_change_after(self, since: float, start: int) -> tuple[float, int] | None:
        for at, count in self.samples:
            if at >= since and count != start:
                return at, count
        return None

    def peak(self) -> int:
        return max((count for _, count in self.samples), default=0)

    def between(self, start: float, end: float) -> list[int]:
        return [count for at, count in self.samples if start <= at <= end]


@asynccontextmanager
async def timeline(api: ApiClient, namespace: str, name: str) -> AsyncIterator[Timeline]:
    line = Timeline()

    async def sample() -> None:
        while True:
            try:
                count = await replicas(api, namespace, name)
            except Exception as error:  # a failed read is a missing sample, not the end
                line.errors.append(repr(error))
            else:
                if count is not None:
                    line.samples.append((time.monotonic(), count))
            await asyncio.sleep(0.1)

    task = asyncio.create_task(sample())
    try:
        yield line
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    connection = aioredis.Redis.from_url(redis_url)
    yield connection
    await connection.aclose()


async def done_tags(client: Any) -> Counter[str]:
    return Counter(tag.decode() for tag in await client.lrange("example:done", 0, -1))


async def all_done(client: Any, tags: list[str], within: float) -> Counter[str]:
    async def finished() -> Counter[str] | None:
        done = await done_tags(client)
        return done if all(done[tag] for tag in tags) else None

    done = await async_wait_for(finished, timeout=within, interval=0.2, what="every job done")
    duplicates = {tag: n for tag, n in done.items() if n > 1}
    assert not duplicates, f"jobs done more than once: {duplicates}"
    assert set(done) == set(tags)
    return done


async def at_zero(
    api: ApiClient, namespace: str, name: str, client: Any, within: float = 60
) -> None:
    """A new queue at minReplicas 0 first wakes one worker to learn its cron schedule; wait
    until that worker has published it and the fleet is back at zero with no pod left."""

    async def learned() -> bool:
        return bool(await client.exists(cron_next_key("arq:queue")))

    await async_wait_for(learned, timeout=within, what="the cron schedule published")

    async def no_pods() -> bool:
        return await replicas(api, namespace, name) == 0 and not await pod_names(
            api, namespace, name
        )

    await async_wait_for(no_pods, timeout=within, what=f"{name} back at zero")


async def beats(client: Any) -> dict[str, int]:
    """pod -> in-flight jobs, from the live heartbeats (as the operator reads them)."""
    now, raw = await client.time(), await client.hgetall(heartbeats_key("arq:queue"))
    return {beat.pod: beat.in_flight for beat in live_heartbeats(raw, redis_time_ms(now))}


async def pod_names(api: ApiClient, namespace: str, name: str) -> set[str]:
    return {
        p["metadata"]["name"]
        for p in await list_pods(api, namespace, name)
        if not p["metadata"].get("deletionTimestamp")
    }


def scale_events(api_reasons: list[tuple[str, str]]) -> list[str]:
    return [reason for _, reason in api_reasons if reason.startswith("Scaled")]


# -- scenarios --------------------------------------------------------------------------------


async def test_burst_scales_up_within_a_poll_drains_and_returns_to_zero(
    kube: ApiClient,
    namespace: str,
    example_image: str,
    e2e_operator: OperatorProcess,
    redis_url: str,
    arq_pool: ArqRedis,
    client: Any,
) -> None:
    poll, per_replica, burst = 1, 500, 2000
    scaling = {
        "maxReplicas": 6,
        "jobsPerReplica": per_replica,
        "scaleDown": {"stabilizationSeconds": 10},
    }
    await create_jobqueue(
        kube, namespace, "burst", spec(example_image, redis_url, scaling, maxJobs=50)
    )
    await at_zero(kube, namespace, "burst", client)
    tags = [f"b{i}" for i in range(burst)]

    async with timeline(kube, namespace, "burst") as line:
        started = time.monotonic()
        for chunk in range(0, burst, 100):
            await asyncio.gather(
                *(arq_pool.enqueue_job("fast", t) for t in tags[chunk : chunk + 100])
            )
        enqueued = time.monotonic()
        await all_done(client, tags, within=120)
        drained = time.monotonic()
        await wait_replicas(
            kube, namespace, "burst", lambda n: n == 0, within=60, what="back to zero"
        )
        at_rest = time.monotonic()

    first = line.first_change_after(started, 0)
    assert first is not None
    # The scale subresource changed within one poll (+1 s) of the burst being in Redis.
    assert first[0] - enqueued <= poll + 1, (first[0] - started, enqueued - started)
    # The fleet grew to what the formula gives: ceil(2000 / 500) = 4 (under maxReplicas 6).
    assert line.peak() == -(-burst // per_replica) == 4
    assert await client.zcard("arq:queue") == 0
    print(
        f"\nburst of {burst}: enqueued in {enqueued - started:.2f}s, first scale "
        f"{first[0] - started:.2f}s after the first enqueue ({first[0] - enqueued:+.2f}s after the "
        f"last), peak {line.peak()} replicas, drained in {drained - started:.1f}s, back to zero "
        f"{at_rest - drained:.1f}s after the drain"
    )
    reasons = scale_events(await event_reasons(kube, namespace, "burst"))
    assert "ScaledUp" in reasons
    assert "ScaledDown" in reasons
    jq = await get_jobqueue(kube, namespace, "burst")
    assert jq is not None
    assert jq["status"]["lastScaleReason"] == "QueueEmpty"

    # What a person sees: the operator fills READY, RUNNING, REPLICAS and DESIRED (and OLDEST,
    # the oldest waiting job's age, which an empty queue leaves blank).
    async def table() -> str | None:
        out = kubectl(e2e_operator.plane, "-n", namespace, "get", "jq", "burst").stdout
        [row] = table_rows(out)
        return out if row == resting_row | {"AGE": row["AGE"]} else None

    resting_row = {
        "NAME": "burst",
        "QUEUE": "arq:queue",
        "READY": "0",
        "RUNNING": "0",
        "OLDEST": "",
        "REPLICAS": "0",
        "DESIRED": "0",
    }
    await async_wait_for(table, timeout=30, what="kubectl get jq at rest")


async def test_scale_down_takes_the_idle_pods_and_keeps_the_busy_ones(
    kube: ApiClient,
    namespace: str,
    example_image: str,
    e2e_operator: OperatorProcess,
    redis_url: str,
    arq_pool: ArqRedis,
    client: Any,
) -> None:
    # Four pods up and idle first, then one job each for two of them: which pods are busy is
    # then decided by the jobs, not by how staggered the pods' starts were (from zero, a pod
    # that finished a short job before the fourth pod ran took a second one, in CI).
    scaling = {
        "minReplicas": 4,
        "maxReplicas": 4,
        "jobsPerReplica": 1,
        "scaleDown": {"stabilizationSeconds": 5},
    }
    await create_jobqueue(
        kube, namespace, "idle", spec(example_image, redis_url, scaling, maxJobs=1)
    )

    async def four_idle() -> bool:
        running = await beats(client)
        return len(running) == 4 and not any(running.values())

    await async_wait_for(four_idle, timeout=60, interval=0.2, what="4 idle pods")
    await arq_pool.enqueue_job("slow", "long-0", seconds=20)
    await arq_pool.enqueue_job("slow", "long-1", seconds=20)

    async def two_busy_two_idle() -> dict[str, int] | None:
        running = await beats(client)
        busy = {pod for pod, jobs in running.items() if jobs}
        return running if len(running) == 4 and len(busy) == 2 else None

    # Each busy pod took one job (maxJobs 1); the minimum goes, so the fleet wants 2.
    running = await async_wait_for(two_busy_two_idle, timeout=20, interval=0.2, what="2 busy")
    busy = {pod for pod, jobs in running.items() if jobs}
    idle = set(running) - busy
    await merge_patch_jobqueue(kube, namespace, "idle", {"spec": {"scaling": {"minReplicas": 0}}})

    await wait_replicas(kube, namespace, "idle", lambda n: n == 2, within=30, what="4 -> 2")

    async def only_busy_left() -> set[str] | None:
        names = await pod_names(kube, namespace, "idle")
        return names if len(names) == 2 else None

    survivors = await async_wait_for(only_busy_left, timeout=30, what="two pods left")
    assert survivors == busy, f"kept {survivors}, busy were {busy}, idle were {idle}"
    # The busy pods finish their jobs; nothing lost, nothing run twice.
    await all_done(client, ["long-0", "long-1"], within=60)
    started = Counter(t.decode() for t in await client.lrange("example:started", 0, -1))
    assert set(started.values()) == {1}, started


async def test_redis_hung_under_load_freezes_replicas_then_scaling_resumes(
    kube: ApiClient,
    namespace: str,
    example_image: str,
    e2e_operator: OperatorProcess,
    redis_server: RedisServer,
    arq_pool: ArqRedis,
    client: Any,
) -> None:
    scaling = {"maxReplicas": 3, "jobsPerReplica": 2, "scaleDown": {"stabilizationSeconds": 3}}
    await create_jobqueue(
        kube, namespace, "outage", spec(example_image, redis_server.url, scaling, maxJobs=2)
    )
    await at_zero(kube, namespace, "outage", client)
    tags = [f"o{i}" for i in range(6)]
    for tag in tags:
        await arq_pool.enqueue_job("slow", tag, seconds=8)
    await wait_replicas(kube, namespace, "outage", lambda n: n == 3, within=30, what="3 pods")

    assert redis_server.process is not None
    pid = redis_server.process.pid
    async with timeline(kube, namespace, "outage") as line:
        os.kill(pid, signal.SIGSTOP)  # Redis stops answering, connections stay open
        stopped = time.monotonic()
        try:

            async def unreachable() -> dict[str, Any] | None:
                condition = await ready_condition(kube, namespace, "outage", "RedisReachable")
                return condition if condition and condition["status"] == "False" else None

            condition = await async_wait_for(unreachable, timeout=20, what="RedisReachable=False")
            # Keep Redis hung for four more failed probe rounds: well past the 3 s scale-down
            # window, so a scaler that took the silence for an empty queue would have acted.
            rounds = probe_rounds(e2e_operator, redis_server.url)
            await async_wait_for(
                lambda: _more_rounds(e2e_operator, redis_server.url, rounds + 4),
                timeout=40,
                what="four failed probe rounds",
            )
        finally:
            os.kill(pid, signal.SIGCONT)
        resumed = time.monotonic()
        assert set(line.between(stopped, resumed)) == {3}  # frozen throughout
    assert "did not answer" in condition["message"]
    assert ("Warning", "RedisUnreachable") in await event_reasons(kube, namespace, "outage")

    async def reachable() -> bool:
        condition = await ready_condition(kube, namespace, "outage", "RedisReachable")
        return bool(condition and condition["status"] == "True")

    await async_wait_for(reachable, timeout=20, what="RedisReachable=True again")
    assert ("Normal", "RedisAnswered") in await event_reasons(kube, namespace, "outage")
    # Scaling resumes: the jobs finish and the fleet goes back to zero.
    await all_done(client, tags, within=60)
    await wait_replicas(kube, namespace, "outage", lambda n: n == 0, within=60, what="zero")
    assert f'arqfleet_redis_up{{redis="{pool_id(redis_server.url)}"}} 1.0' in (
        e2e_operator.metrics()
    )


def probe_rounds(operator: OperatorProcess, url: str) -> float:
    """How many probe rounds the operator ran against this Redis (its own metric)."""
    wanted = f'arqfleet_probe_duration_seconds_count{{redis="{pool_id(url)}"}}'
    for line in operator.metrics().splitlines():
        if line.startswith(wanted):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def _more_rounds(operator: OperatorProcess, url: str, wanted: float) -> bool:
    return probe_rounds(operator, url) >= wanted


async def test_deferred_jobs_wait_at_zero_and_wake_the_fleet_when_due(
    kube: ApiClient,
    namespace: str,
    example_image: str,
    e2e_operator: OperatorProcess,
    redis_url: str,
    arq_pool: ArqRedis,
    client: Any,
) -> None:
    scaling = {"maxReplicas": 2, "scaleDown": {"stabilizationSeconds": 3}}
    await create_jobqueue(kube, namespace, "later", spec(example_image, redis_url, scaling))
    await at_zero(kube, namespace, "later", client)
    defer = 12
    async with timeline(kube, namespace, "later") as line:
        enqueued = time.monotonic()
        for i in range(3):
            await arq_pool.enqueue_job("remind", f"r{i}", _defer_by=defer)
        due = enqueued + defer

        async def deferred_reported() -> bool:
            jq = await get_jobqueue(kube, namespace, "later")
            return bool(jq and (jq["status"].get("queue") or {}).get("deferred") == 3)

        await async_wait_for(deferred_reported, timeout=10, what="3 deferred in status")
        await all_done(client, ["r0", "r1", "r2"], within=defer + 30)
    first = line.first_change_after(enqueued, 0)
    assert first is not None
    assert first[0] >= due - 0.5, f"woke {due - first[0]:.1f}s before the jobs were due"


async def test_a_latency_target_scales_a_small_backlog_of_slow_jobs(
    kube: ApiClient,
    namespace: str,
    example_image: str,
    e2e_operator: OperatorProcess,
    redis_url: str,
    arq_pool: ArqRedis,
    client: Any,
) -> None:
    # 8 jobs of 4 s at 2 per pod: the depth formula (20 jobs per replica) says one pod, which
    # would take 16 s; a 3 s wait target asks for more.
    scaling = {"maxReplicas": 4, "jobsPerReplica": 20, "maxWaitSeconds": 3}
    await create_jobqueue(
        kube, namespace, "slowq", spec(example_image, redis_url, scaling, maxJobs=2)
    )
    await at_zero(kube, namespace, "slowq", client)
    tags = [f"l{i}" for i in range(8)]
    for tag in tags:
        await arq_pool.enqueue_job("slow", tag, seconds=4)
    await wait_replicas(kube, namespace, "slowq", lambda n: n >= 2, within=30, what=">= 2 pods")
    await all_done(client, tags, within=60)
    jq = await get_jobqueue(kube, namespace, "slowq")
    assert jq is not None
    messages = await _event_messages(kube, namespace, "slowq")
    assert any("(OldestJobWaiting)" in m or "(LatencyTarget)" in m for m in messages), messages


async def _event_messages(api: ApiClient, namespace: str, name: str) -> list[str]:
    from kubernetes_asyncio.client import CoreV1Api

    events = await CoreV1Api(api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name},involvedObject.kind=JobQueue"
    )
    return [e.message for e in events.items]


@pytest.fixture
def operator_env(request: pytest.FixtureRequest) -> dict[str, str]:
    return dict(getattr(request, "param", {}))


@pytest.mark.parametrize(
    "operator_env", [{"ARQFLEET_CRON_WAKE_LEAD_SECONDS": "12"}], indirect=True, ids=["lead-12s"]
)
async def test_cron_fires_on_three_consecutive_ticks_from_zero(
    kube: ApiClient,
    namespace: str,
    example_image: str,
    e2e_operator: OperatorProcess,
    redis_url: str,
    client: Any,
) -> None:
    scaling = {"maxReplicas": 1, "scaleDown": {"stabilizationSeconds": 3}}
    once_a_minute = {"name": "EXAMPLE_CRON_EVERY_SECONDS", "value": "60"}
    body = spec(example_image, redis_url, scaling, env=[once_a_minute])
    async with timeline(kube, namespace, "cron") as line:
        await create_jobqueue(kube, namespace, "cron", body)

        async def three_ticks() -> list[int] | None:
            ticks = sorted(int(t) for t in await client.lrange("example:ticks", 0, -1))
            return ticks if len(ticks) >= 3 else None

        ticks = await async_wait_for(three_ticks, timeout=230, interval=0.5, what="3 ticks")
    # A tick's score is its minute when arq enqueues it ahead (deferred to the minute), or the
    # moment arq enqueued it when its cron poll came late (a busy machine: CI saw 94 ms). Either
    # way: three consecutive minutes, none skipped, each tick on or just after its minute.
    minutes = [tick // 60_000 for tick in ticks]
    assert minutes == list(range(minutes[0], minutes[0] + 3)), ticks
    assert all(tick % 60_000 < 5_000 for tick in ticks), ticks
    # Between ticks the fleet went back to zero: each tick was a wake from zero.
    wall_to_mono = time.monotonic() - time.time()
    for earlier, later in itertools.pairwise(ticks):
        counts = line.between(earlier / 1000 + wall_to_mono, later / 1000 + wall_to_mono)
        assert 0 in counts, (earlier, later, sorted(set(counts)))
        assert 1 in counts, (earlier, later, sorted(set(counts)))
    reasons = await _event_messages(kube, namespace, "cron")
    assert sum("(CronJobDue)" in m for m in reasons) >= 2, reasons


async def test_operator_killed_in_a_scale_down_window_resumes_the_same_window(
    kube: ApiClient,
    namespace: str,
    example_image: str,
    e2e_operator: OperatorProcess,
    redis_url: str,
    arq_pool: ArqRedis,
    client: Any,
) -> None:
    window = 20
    scaling = {
        "maxReplicas": 3,
        "jobsPerReplica": 1,
        "scaleDown": {"stabilizationSeconds": window},
    }
    await create_jobqueue(
        kube, namespace, "restart", spec(example_image, redis_url, scaling, maxJobs=1)
    )
    await at_zero(kube, namespace, "restart", client)
    tags = [f"k{i}" for i in range(3)]
    for tag in tags:
        await arq_pool.enqueue_job("slow", tag, seconds=2)
    await wait_replicas(kube, namespace, "restart", lambda n: n == 3, within=30, what="3 pods")
    await all_done(client, tags, within=40)

    async def window_recorded() -> dict[str, Any] | None:
        jq = await get_jobqueue(kube, namespace, "restart")
        history = (jq or {}).get("status", {}).get("history") or {}
        held = [h for h in history.get("down") or () if h["replicas"] == 3]
        return held[0] if history.get("recommendation") == 0 and held else None

    held = await async_wait_for(window_recorded, timeout=20, what="the window in status")
    until = datetime.strptime(held["until"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    earliest = until.timestamp() + window  # not one second before this may it scale down

    assert e2e_operator.popen is not None
    e2e_operator.popen.send_signal(signal.SIGKILL)
    e2e_operator.popen.wait(timeout=10)
    assert time.time() < earliest - 5, "the kill must land inside the window"
    async with timeline(kube, namespace, "restart") as line:
        await asyncio.to_thread(e2e_operator.start)  # blocking: keep sampling meanwhile

        async def sampled_zero() -> bool:
            return line.first_change_after(0, 3) is not None

        await async_wait_for(sampled_zero, timeout=60, what="the scale-down, as sampled")
    change = line.first_change_after(0, 3)
    assert change is not None, (line.samples[:3], line.errors[:3])
    changed_at = change[0] - time.monotonic() + time.time()
    assert changed_at >= earliest - 0.5, f"scaled down {earliest - changed_at:.1f}s early"


async def test_paused_freezes_replicas_while_status_keeps_updating(
    kube: ApiClient,
    namespace: str,
    example_image: str,
    e2e_operator: OperatorProcess,
    redis_url: str,
    arq_pool: ArqRedis,
    client: Any,
) -> None:
    scaling = {"minReplicas": 1, "maxReplicas": 3, "jobsPerReplica": 1}
    body = {**spec(example_image, redis_url, scaling, maxJobs=1), "paused": True}
    await create_jobqueue(kube, namespace, "frozen", body)
    await wait_replicas(kube, namespace, "frozen", lambda n: n == 1, within=30, what="1 pod")
    tags = [f"p{i}" for i in range(8)]
    async with timeline(kube, namespace, "frozen") as line:
        for tag in tags:
            await arq_pool.enqueue_job("slow", tag, seconds=2)
        seen: set[int] = set()

        async def ready_counts_moving() -> bool:
            jq = await get_jobqueue(kube, namespace, "frozen")
            queue = (jq or {}).get("status", {}).get("queue") or {}
            if "ready" in queue:
                seen.add(queue["ready"])
            return len(seen) >= 3

        # One pod works through the backlog; status follows it, replicas do not.
        await async_wait_for(ready_counts_moving, timeout=30, what="status.queue updating")
        assert set(line.between(0, time.monotonic())) == {1}
        jq = await get_jobqueue(kube, namespace, "frozen")
        assert jq is not None
        assert jq["status"]["desiredReplicas"] == 1
        assert jq["status"]["history"]["recommendation"] > 1  # what it would do, recorded
    await merge_patch_jobqueue(kube, namespace, "frozen", {"spec": {"paused": False}})
    await wait_replicas(kube, namespace, "frozen", lambda n: n > 1, within=20, what="scaled up")
    await all_done(client, tags, within=60)
