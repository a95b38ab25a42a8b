"""Cron with three workers: arq's unique cron job ids make each tick run exactly once."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from itertools import pairwise
from typing import cast

import redis

from arqfleet.worker.constants import cron_next_key, parse_cron_next
from tests.support.waiting import wait_for
from tests.support.worker_process import WorkerProcess


def ticks(client: redis.Redis) -> list[int]:
    return [int(raw) for raw in cast(list[bytes], client.lrange("example:ticks", 0, -1))]


def test_cron_job_runs_once_per_tick_with_three_workers(
    start_worker: Callable[..., WorkerProcess], redis_client: redis.Redis
) -> None:
    workers = [start_worker(EXAMPLE_CRON_EVERY_SECONDS="1") for _ in range(3)]
    for worker in workers:
        worker.wait_ready()
    # Ticks scheduled after every worker is up, so all three compete for each of them.
    all_up_ms = int(time.time() * 1000) + 1000

    def competed() -> list[int]:
        seen = [t for t in ticks(redis_client) if t >= all_up_ms]
        return seen if len(seen) >= 4 else []

    seen = wait_for(competed, timeout=15, what="4 ticks after all workers started")
    assert len(seen) == len(set(seen)), f"a tick ran twice: {seen}"
    ordered = sorted(seen)
    assert all(b - a == 1000 for a, b in pairwise(ordered)), ordered


def published(client: redis.Redis) -> tuple[int | None, int, int] | None:
    """(next tick ms, Redis time ms, TTL ms) of the cron-next key, or None when absent."""
    raw = cast(bytes | None, client.get(cron_next_key("arq:queue")))
    if raw is None:
        return None
    seconds, micros = cast(tuple[int, int], client.time())
    ttl = cast(int, client.pttl(cron_next_key("arq:queue")))
    return parse_cron_next(raw), seconds * 1000 + micros // 1000, ttl


def test_workers_publish_the_next_tick_and_it_outlives_them(
    start_worker: Callable[..., WorkerProcess], redis_client: redis.Redis
) -> None:
    worker = start_worker(EXAMPLE_CRON_EVERY_SECONDS="2", ARQFLEET_HEARTBEAT_SECONDS="0.2")
    worker.wait_ready()
    first = wait_for(lambda: published(redis_client), timeout=5, what="the cron key")
    tick, now_ms, ttl = first
    assert tick is not None
    # The coming even second; at most a beat old (arq moves it on just before the tick).
    assert now_ms - 1000 <= tick <= now_ms + 2000
    assert tick % 2000 == 0
    # The key lives a day past its tick.
    assert 24 * 3600 * 1000 <= ttl <= 24 * 3600 * 1000 + 3000

    # After the tick fires the published tick moves on, exactly one period per tick.
    def moved() -> int | None:
        now = published(redis_client)
        return now[0] if now and now[0] is not None and now[0] > tick else None

    later = wait_for(moved, timeout=10, what="the published tick to move on")
    assert (later - tick) % 2000 == 0
    wait_for(lambda: tick in ticks(redis_client), timeout=10, what="the tick to have run")

    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(timeout=10) == 0
    after = published(redis_client)
    assert after is not None, "a clean exit must not remove the cron key"
    assert after[2] > 0


def test_settings_without_cron_jobs_publish_none(
    start_worker: Callable[..., WorkerProcess], redis_client: redis.Redis
) -> None:
    start_worker(EXAMPLE_CRON_EVERY_SECONDS="0", ARQFLEET_HEARTBEAT_SECONDS="0.2").wait_ready()
    tick, _, ttl = wait_for(lambda: published(redis_client), timeout=5, what="the cron key")
    assert tick is None
    assert ttl > 29 * 24 * 3600 * 1000  # kept a month
