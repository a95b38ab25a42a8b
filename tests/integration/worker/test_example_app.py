"""The example app's arq features under arqfleet-worker: deferral, dedup by _job_id, Retry."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import cast

import redis
from arq.connections import ArqRedis
from arq.jobs import JobStatus

from tests.support.waiting import async_wait_for
from tests.support.worker_process import WorkerProcess


def done(client: redis.Redis) -> list[str]:
    return [raw.decode() for raw in cast(list[bytes], client.lrange("example:done", 0, -1))]


async def test_deferred_deduplicated_and_retried_jobs(
    start_worker: Callable[..., WorkerProcess], arq_pool: ArqRedis, redis_client: redis.Redis
) -> None:
    start_worker().wait_ready()
    enqueued_at = time.time()
    deferred = await arq_pool.enqueue_job("remind", "deferred", _defer_by=1.0)
    first = await arq_pool.enqueue_job("remind", "dedup-first", _job_id="reminder-42")
    second = await arq_pool.enqueue_job("remind", "dedup-second", _job_id="reminder-42")
    flaky = await arq_pool.enqueue_job("flaky", "flaky", failures=2, backoff=0.05)
    assert deferred is not None
    assert first is not None
    assert second is None  # arq refuses a second job with the same _job_id
    assert flaky is not None

    async def all_complete() -> bool:
        statuses = [await j.status() for j in (deferred, first, flaky)]
        return all(s == JobStatus.complete for s in statuses)

    await async_wait_for(all_complete, timeout=10, what="deferred, dedup and flaky jobs complete")
    assert sorted(done(redis_client)) == ["dedup-first", "deferred", "flaky"]
    info = await deferred.result_info()
    assert info is not None
    assert info.start_time.timestamp() >= enqueued_at + 0.999  # not before its deferral (ms)
    flaky_info = await flaky.result_info()
    assert flaky_info is not None
    assert flaky_info.job_try == 3  # two Retry tries, then success
