"""Cron with three workers: arq's unique cron job ids make each tick run exactly once."""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import pairwise
from typing import cast

import redis

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
