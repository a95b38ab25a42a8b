"""The queue probe against a real redis-server filled by real arq enqueues and real workers."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from arq.connections import ArqRedis
from arq.constants import abort_jobs_ss

from arqfleet.operator.queue_probe import ProbeError, ProbeRequest, ProbeResult, probe
from tests.support.redis_server import RedisServer
from tests.support.waiting import async_wait_for
from tests.support.worker_process import WorkerProcess

QUEUE = "arq:queue"


def request(queue: str = QUEUE, *, window: int = 100, due_soon: float = 30) -> ProbeRequest:
    return ProbeRequest(queue_name=queue, window=window, due_soon_seconds=due_soon)


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    connection = aioredis.Redis.from_url(redis_url, socket_timeout=2)
    yield connection
    await connection.aclose()


async def probe_one(client: aioredis.Redis, req: ProbeRequest | None = None) -> ProbeResult:
    [result] = await probe(client, [req or request()], timeout=5)
    assert not isinstance(result, ProbeError), result
    return result


async def test_immediate_jobs_are_ready_with_the_oldest_age(
    client: aioredis.Redis, arq_pool: ArqRedis
) -> None:
    for i in range(5):
        await arq_pool.enqueue_job("fast", f"t{i}")
    result = await probe_one(client)
    stats = result.stats
    assert (stats.ready, stats.running, stats.deferred, stats.due_soon) == (5, 0, 0, 0)
    assert 0 <= stats.oldest_ready_seconds < 5
    assert stats.next_deferred_seconds is None
    assert result.window_complete
    assert stats.pods == ()
    assert stats.cron is None  # no worker ever published a schedule


async def test_deferred_jobs_and_those_due_within_the_window(
    client: aioredis.Redis, arq_pool: ArqRedis
) -> None:
    await arq_pool.enqueue_job("fast", "now")
    for i in range(3):
        await arq_pool.enqueue_job("remind", f"later{i}", _defer_by=600)
    for i in range(2):
        await arq_pool.enqueue_job("remind", f"soon{i}", _defer_by=10)
    stats = (await probe_one(client, request(due_soon=30))).stats
    assert (stats.ready, stats.deferred, stats.due_soon) == (1, 5, 2)
    assert stats.next_deferred_seconds is not None
    assert 5 < stats.next_deferred_seconds <= 10


async def test_ages_come_from_redis_time_not_the_callers_clock(
    client: aioredis.Redis, redis_client: Any
) -> None:
    # A job scored 120 s before Redis's own clock, whatever this process's clock says.
    seconds, micros = redis_client.time()
    now_ms = seconds * 1000 + micros // 1000
    redis_client.set("arq:job:old", b"x")
    redis_client.zadd(QUEUE, {"old": now_ms - 120_000})
    result = await probe_one(client)
    assert 119 <= result.stats.oldest_ready_seconds < 125
    assert abs(result.redis_time_ms - now_ms) < 5_000


async def test_retry_backoff_moves_a_job_to_deferred(
    client: aioredis.Redis, arq_pool: ArqRedis, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker().wait_ready()
    await arq_pool.enqueue_job("flaky", "backoff", failures=1, backoff=60)

    async def deferred() -> ProbeResult | None:
        result = await probe_one(client)
        return result if result.stats.deferred == 1 else None

    result = await async_wait_for(deferred, timeout=10, what="the retry to be deferred")
    assert (result.stats.ready, result.stats.running) == (0, 0)
    assert result.stats.next_deferred_seconds is not None
    assert result.stats.next_deferred_seconds > 50


async def test_running_jobs_from_in_progress_keys_and_heartbeats(
    client: aioredis.Redis, arq_pool: ArqRedis, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker(ARQFLEET_MAX_JOBS="2", ARQFLEET_HEARTBEAT_SECONDS="0.2").wait_ready()
    for i in range(3):
        await arq_pool.enqueue_job("slow", f"s{i}", seconds=4)

    async def two_running() -> ProbeResult | None:
        result = await probe_one(client)
        beats = {pod.pod: pod.in_flight for pod in result.stats.pods}
        return result if beats.get(worker.pod_name) == 2 else None

    result = await async_wait_for(two_running, timeout=10, what="2 running per heartbeat")
    # Each due id was checked: the in-progress keys are exact, and agree with the heartbeat.
    assert result.window_complete
    assert (result.stats.running, result.stats.ready) == (2, 1)
    assert result.running_from_keys == result.running_from_heartbeats == 2
    [pod] = result.stats.pods
    assert (pod.max_jobs, pod.draining) == (2, False)


async def test_a_window_shorter_than_the_backlog_falls_back_on_heartbeats(
    client: aioredis.Redis, arq_pool: ArqRedis, start_worker: Callable[..., WorkerProcess]
) -> None:
    # Jobs enqueued while no worker runs, then an older one added: the worker's picks sit
    # behind it, outside a window of one.
    for i in range(4):
        await arq_pool.enqueue_job("slow", f"w{i}", seconds=4)
    worker = start_worker(ARQFLEET_MAX_JOBS="3", ARQFLEET_HEARTBEAT_SECONDS="0.2").wait_ready()

    async def three_in_flight() -> bool:
        result = await probe_one(client)
        return any(p.in_flight == 3 for p in result.stats.pods if p.pod == worker.pod_name)

    await async_wait_for(three_in_flight, timeout=10, what="3 in flight")
    result = await probe_one(client, request(window=1))
    assert not result.window_complete
    assert result.running_from_keys == 1  # the one id the window saw is running
    assert result.running_from_heartbeats == 3
    assert (result.stats.running, result.stats.ready) == (3, 1)


async def test_an_aborted_queued_job_waits_for_a_worker_to_retire_it(
    client: aioredis.Redis, arq_pool: ArqRedis, redis_client: Any
) -> None:
    job = await arq_pool.enqueue_job("fast", "to-abort")
    assert job is not None
    with pytest.raises(TimeoutError):  # no worker confirms it
        await job.abort(timeout=0.2, poll_delay=0.05)
    assert redis_client.zscore(abort_jobs_ss, job.job_id) is not None
    # arq retires an aborted job only when a worker picks it: until then it needs a worker.
    assert (await probe_one(client)).stats.ready == 1


async def test_members_that_are_not_arq_jobs_are_skipped_and_counted(
    client: aioredis.Redis, arq_pool: ArqRedis, redis_client: Any
) -> None:
    await arq_pool.enqueue_job("fast", "real")
    redis_client.zadd(QUEUE, {"not-a-job": 1, b"\xff\xfe binary": 2, "minus-inf": float("-inf")})
    result = await probe_one(client)
    assert result.skipped == 3
    assert result.stats.ready == 1
    assert result.stats.oldest_ready_seconds < 60  # the real job's age, not 1970's


async def test_malformed_heartbeats_are_skipped_and_counted(
    client: aioredis.Redis, redis_client: Any
) -> None:
    redis_client.hset(
        "arqfleet:heartbeats:arq:queue",
        mapping={"corrupt": b"{not json", "future": b'{"version": 99}', "huge": b"x" * 100_000},
    )
    result = await probe_one(client)
    assert result.bad_heartbeats == 3
    assert result.stats.pods == ()


async def test_a_hundred_thousand_deferred_jobs_cost_one_command(
    client: aioredis.Redis, redis_client: Any
) -> None:
    seconds, _ = redis_client.time()
    future_ms = (seconds + 3600) * 1000
    pipe: Any = redis_client.pipeline(transaction=False)
    for start in range(0, 100_000, 10_000):
        pipe.zadd(QUEUE, {f"d{i}": future_ms + i for i in range(start, start + 10_000)})
    pipe.execute()
    await probe_one(client)  # loads the script once
    redis_client.config_resetstat()
    stats = (await probe_one(client)).stats
    assert (stats.deferred, stats.ready, stats.due_soon) == (100_000, 0, 0)
    commands = {
        name.removeprefix("cmdstat_"): info["calls"]
        for name, info in redis_client.info("commandstats").items()
    }
    # One EVALSHA from the client (Redis also counts the commands the script runs): O(log n)
    # reads, never a scan, a KEYS or a ZCARD of the queue.
    assert commands.pop("evalsha") == 1
    assert commands.pop("zcard") == 1  # the dead-letter index, not the queue
    assert set(commands) <= {"time", "zcount", "zrangebyscore", "exists", "hgetall", "get"} | {
        "config|resetstat",
        "info",
    }


async def test_queues_on_one_redis_share_one_pipeline(
    client: aioredis.Redis, redis_client: Any, arq_pool: ArqRedis
) -> None:
    await arq_pool.enqueue_job("fast", "a", _queue_name="q:a")
    await arq_pool.enqueue_job("fast", "b1", _queue_name="q:b")
    await arq_pool.enqueue_job("fast", "b2", _queue_name="q:b")
    await probe(client, [request("q:a")], timeout=5)
    redis_client.config_resetstat()
    results = await probe(client, [request("q:a"), request("q:b"), request("q:c")], timeout=5)
    assert [r.stats.ready for r in results if isinstance(r, ProbeResult)] == [1, 2, 0]
    assert redis_client.info("commandstats")["cmdstat_evalsha"]["calls"] == 3


async def test_a_stopped_redis_is_an_error_for_each_queue(redis_server: RedisServer) -> None:
    connection = aioredis.Redis.from_url(redis_server.url, socket_timeout=1)
    redis_server.stop()
    try:
        results = await probe(connection, [request("q:a"), request("q:b")], timeout=2)
    finally:
        await connection.aclose()
    assert all(isinstance(r, ProbeError) for r in results)
    assert "ConnectionError" in str(results[0])


async def test_a_hung_redis_is_cut_at_the_deadline(redis_server: RedisServer) -> None:
    connection = aioredis.Redis.from_url(redis_server.url, socket_timeout=30)
    await connection.ping()
    assert redis_server.process is not None
    os.kill(redis_server.process.pid, signal.SIGSTOP)  # a real hang: the process stops answering
    try:
        began = time.monotonic()
        [result] = await probe(connection, [request()], timeout=0.5)
        elapsed = time.monotonic() - began
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
        await connection.aclose()
    assert isinstance(result, ProbeError)
    assert "did not answer within 0.5s" in str(result)
    assert elapsed < 5  # the deadline, not the 30 s socket timeout, ended it
