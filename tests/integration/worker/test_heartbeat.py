"""Heartbeats read the way the operator reads them: TIME + HGETALL, parsed by constants."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import redis
from arq.connections import ArqRedis
from redis.asyncio import Redis as AsyncRedis

from arqfleet.worker import heartbeat as hb
from arqfleet.worker.constants import Heartbeat, heartbeats_key, live_heartbeats, redis_time_ms
from arqfleet.worker.health import Health
from tests.support.waiting import async_wait_for, wait_for
from tests.support.worker_process import WorkerProcess


def beats(client: redis.Redis, queue: str = "arq:queue") -> dict[str, Heartbeat]:
    pipe: Any = client.pipeline(transaction=False)
    pipe.time()
    pipe.hgetall(heartbeats_key(queue))
    now, raw = pipe.execute()
    return {beat.pod: beat for beat in live_heartbeats(raw, redis_time_ms(now))}


async def test_heartbeat_reports_in_flight_completed_and_draining(
    start_worker: Callable[..., WorkerProcess], arq_pool: ArqRedis, redis_client: redis.Redis
) -> None:
    worker = start_worker(ARQFLEET_HEARTBEAT_SECONDS="0.2", ARQFLEET_MAX_JOBS="4").wait_ready()
    pod = worker.pod_name
    wait_for(lambda: pod in beats(redis_client), timeout=5, what="first heartbeat")
    first = beats(redis_client)[pod]
    assert (first.in_flight, first.completed, first.draining, first.max_jobs) == (0, 0, False, 4)

    await arq_pool.enqueue_job("slow", "hb-0", seconds=3.0)
    await arq_pool.enqueue_job("slow", "hb-1", seconds=3.0)
    await arq_pool.enqueue_job("fast", "hb-2")
    wait_for(
        lambda: (b := beats(redis_client).get(pod)) and (b.in_flight, b.completed) == (2, 1),
        timeout=5,
        what="2 in flight, 1 completed",
    )

    worker.signal(signal.SIGTERM)
    wait_for(
        lambda: (b := beats(redis_client).get(pod)) and b.draining and b.in_flight == 2,
        timeout=2,
        what="draining reported while jobs finish",
    )
    assert worker.wait_exit(timeout=8) == 0
    assert pod not in beats(redis_client)
    assert not redis_client.hexists(heartbeats_key("arq:queue"), pod)


async def test_a_beat_that_cannot_be_built_does_not_stop_the_beats(redis_url: str) -> None:
    # A bug of ours on the beat's path (here: the snapshot raising once) is not a Redis error;
    # it must cost one beat, not every later one.
    calls = 0

    def snapshot() -> tuple[int, int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("a bug in the snapshot")
        return 0, calls

    pool: Any = AsyncRedis.from_url(redis_url)
    heartbeat = hb.Heartbeat(
        pool,
        queue_name="arq:queue",
        pod="pod-a",
        interval=0.1,
        max_jobs=1,
        health=Health(redis_stale_seconds=60),
        snapshot=snapshot,
    )

    async def beat_written() -> bool:
        return bool(await pool.hexists(heartbeats_key("arq:queue"), "pod-a"))

    heartbeat.start()
    try:
        await async_wait_for(beat_written, timeout=5, what="a beat after the failed one")
    finally:
        await heartbeat.stop(remove=True)
        await pool.aclose()
