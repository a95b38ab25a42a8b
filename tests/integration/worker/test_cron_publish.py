"""The next cron tick each worker publishes, read the way the operator reads it.

Every beat writes the heartbeat and the cron key in one script, so the heartbeat's
``expires_at_ms`` (Redis TIME at the write + the beat TTL) dates the cron value exactly: the tick
is checked against the Redis time it was computed at, never against a local clock.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from redis.asyncio import Redis as AsyncRedis

from arqfleet.worker.constants import (
    CRON_KEY_TTL_AFTER_TICK_MS,
    CRON_KEY_TTL_NO_CRON_MS,
    HEARTBEAT_TTL_BEATS,
    cron_next_key,
    heartbeats_key,
    parse_cron_next,
    parse_heartbeat,
    redis_time_ms,
)
from arqfleet.worker.health import Health
from arqfleet.worker.heartbeat import Heartbeat
from tests.support.waiting import async_wait_for, wait_for
from tests.support.worker_process import REPO_ROOT, WorkerProcess

QUEUE = "arq:queue"
BEAT_SECONDS = 0.2
BEAT_TTL_MS = int(BEAT_SECONDS * HEARTBEAT_TTL_BEATS * 1000)  # as the writer computes it
# PTTL and TIME are read in one transaction; the writer rounds to whole milliseconds.
TTL_SLACK_MS = 5


@dataclass(frozen=True)
class Published:
    """One atomic read of the cron key (and of the pod's heartbeat written with it)."""

    tick_ms: int | None
    now_ms: int  # Redis TIME at the read
    ttl_ms: int  # PTTL of the cron key
    written_ms: int | None  # Redis TIME at the write, None once the pod's beat is gone


def published(client: redis.Redis, pod: str) -> Published | None:
    """The cron key as the operator reads it (GET + TIME), None while it is absent."""
    pipe: Any = client.pipeline(transaction=True)
    pipe.time()
    pipe.get(cron_next_key(QUEUE))
    pipe.pttl(cron_next_key(QUEUE))
    pipe.hget(heartbeats_key(QUEUE), pod)
    now, raw, ttl, beat = pipe.execute()
    if raw is None:
        return None
    written = None
    if beat is not None:
        written = parse_heartbeat(beat).expires_at_ms - BEAT_TTL_MS
    return Published(parse_cron_next(raw), redis_time_ms(now), cast(int, ttl), written)


def published_by_beat(client: redis.Redis, pod: str, after_tick: int = -1) -> Published | None:
    """The cron key with the live beat that wrote it, once it names a tick past `after_tick`."""
    seen = published(client, pod)
    if seen is None or seen.written_ms is None:
        return None
    if seen.tick_ms is not None and seen.tick_ms <= after_tick:
        return None
    return seen


def assert_ttl_is_a_day_past_the_tick(seen: Published) -> None:
    assert seen.tick_ms is not None
    expected = seen.tick_ms - seen.now_ms + CRON_KEY_TTL_AFTER_TICK_MS
    assert abs(seen.ttl_ms - expected) <= TTL_SLACK_MS, (seen, expected)


def ticks_run(client: redis.Redis) -> list[int]:
    """The ticks the example app's cron job ran for (each run records its score)."""
    return [int(raw) for raw in cast(list[bytes], client.lrange("example:ticks", 0, -1))]


def test_the_next_tick_is_published_moves_on_and_outlives_the_worker(
    start_worker: Callable[..., WorkerProcess], redis_client: redis.Redis
) -> None:
    worker = start_worker(
        EXAMPLE_CRON_EVERY_SECONDS="2", ARQFLEET_HEARTBEAT_SECONDS=str(BEAT_SECONDS)
    ).wait_ready()
    pod = worker.pod_name
    first = wait_for(
        lambda: published_by_beat(redis_client, pod),
        timeout=5,
        what="the cron key and the beat that wrote it",
    )
    tick, written = first.tick_ms, first.written_ms
    assert tick is not None
    assert written is not None
    # The coming even second: in the future at the write, and within one period of it.
    assert written < tick <= written + 2000, first
    assert tick % 2000 == 0
    assert_ttl_is_a_day_past_the_tick(first)

    wait_for(lambda: tick in ticks_run(redis_client), timeout=10, what=f"the tick {tick} to run")
    later = wait_for(
        lambda: published_by_beat(redis_client, pod, after_tick=tick),
        timeout=5,
        what="the published tick to move on",
    )
    assert later.tick_ms is not None
    assert later.written_ms is not None
    assert later.written_ms < later.tick_ms <= later.written_ms + 2000, later
    assert (later.tick_ms - tick) % 2000 == 0
    assert_ttl_is_a_day_past_the_tick(later)

    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(timeout=10) == 0
    after = published(redis_client, pod)
    assert after is not None, "a clean exit must not remove the cron key"
    assert after.written_ms is None, "the clean exit removed the heartbeat, not the cron key"
    assert after.tick_ms is not None
    assert after.tick_ms >= later.tick_ms
    assert after.ttl_ms > 0
    assert_ttl_is_a_day_past_the_tick(after)


def test_settings_without_cron_jobs_publish_null_for_a_month(
    start_worker: Callable[..., WorkerProcess], redis_client: redis.Redis
) -> None:
    worker = start_worker(
        EXAMPLE_CRON_EVERY_SECONDS="0", ARQFLEET_HEARTBEAT_SECONDS=str(BEAT_SECONDS)
    ).wait_ready()
    seen = wait_for(
        lambda: published(redis_client, worker.pod_name), timeout=5, what="the cron key"
    )
    assert seen.tick_ms is None
    assert CRON_KEY_TTL_NO_CRON_MS - 5000 < seen.ttl_ms <= CRON_KEY_TTL_NO_CRON_MS

    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(timeout=10) == 0
    after = published(redis_client, worker.pod_name)
    assert after is not None, "a clean exit must not remove the cron key"
    assert after.tick_ms is None
    assert after.ttl_ms > 0


NIGHTLY_SETTINGS = """
from datetime import timedelta, timezone
from arq import cron

async def nightly(ctx):
    return None

class WorkerSettings:
    cron_jobs = [cron(nightly, hour=0, minute=0, second=0, microsecond=0)]
    timezone = timezone(timedelta(hours=5, minutes=30))
"""
IST_OFFSET_MS = (5 * 3600 + 30 * 60) * 1000
DAY_MS = 24 * 3600 * 1000


@pytest.fixture
def nightly_worker(redis_url: str, tmp_path: Path) -> Iterator[WorkerProcess]:
    """A worker whose settings run a job at midnight in +05:30, on a host whose zone is UTC."""
    (tmp_path / "nightly_settings.py").write_text(NIGHTLY_SETTINGS)
    worker = WorkerProcess(
        redis_url,
        settings="nightly_settings.WorkerSettings",
        env={
            "PYTHONPATH": f"{tmp_path}:{REPO_ROOT}",
            "TZ": "UTC0",
            "ARQFLEET_HEARTBEAT_SECONDS": str(BEAT_SECONDS),
        },
    )
    try:
        yield worker.start()
    finally:
        worker.stop()


def test_the_tick_is_computed_in_the_workers_timezone(
    nightly_worker: WorkerProcess, redis_client: redis.Redis
) -> None:
    nightly_worker.wait_ready()
    seen = wait_for(
        lambda: published_by_beat(redis_client, nightly_worker.pod_name),
        timeout=5,
        what="the cron key and the beat that wrote it",
    )
    assert seen.tick_ms is not None
    assert seen.written_ms is not None
    # Midnight in +05:30 (18:30 UTC), not the host's midnight, and the first one to come.
    assert (seen.tick_ms + IST_OFFSET_MS) % DAY_MS == 0, seen
    assert seen.written_ms < seen.tick_ms <= seen.written_ms + DAY_MS, seen


async def test_a_schedule_that_cannot_be_computed_does_not_stop_the_beats(
    redis_url: str, redis_client: redis.Redis
) -> None:
    def unschedulable() -> int | None:
        raise RuntimeError("the user's cron fields cannot be scheduled")

    pool: Any = AsyncRedis.from_url(redis_url)
    health = Health(redis_stale_seconds=60)
    heartbeat = Heartbeat(
        pool,
        queue_name=QUEUE,
        pod="pod-a",
        interval=BEAT_SECONDS,
        max_jobs=1,
        health=health,
        snapshot=lambda: (0, 0),
        cron_next=unschedulable,
    )

    async def expires_at() -> int | None:
        raw = await pool.hget(heartbeats_key(QUEUE), "pod-a")
        return None if raw is None else parse_heartbeat(raw).expires_at_ms

    heartbeat.start()
    try:
        first = await async_wait_for(expires_at, timeout=5, what="a first beat")

        async def beat_again() -> bool:
            latest = await expires_at()
            return latest is not None and latest > first

        await async_wait_for(beat_again, timeout=5, what="a second beat after the error")
        assert health.redis_reachable
        assert not redis_client.exists(cron_next_key(QUEUE))
    finally:
        await heartbeat.stop(remove=True)
        await pool.aclose()
