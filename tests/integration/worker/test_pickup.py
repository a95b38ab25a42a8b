"""N FleetWorkers on one queue of a real Redis: the in-progress filter and the shared drain."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis
from arq.connections import ArqRedis, RedisSettings
from arq.constants import in_progress_key_prefix
from arq.worker import func

from arqfleet.worker.health import Health
from arqfleet.worker.pickup import SKIPS_WHEN_NONE_HELD, WINDOW_SPARE, Pickup
from arqfleet.worker.runtime import FleetWorker
from tests.support.waiting import async_wait_for


async def test_filter_drops_held_ids_and_keeps_the_oldest_first(
    arq_pool: ArqRedis, redis_client: redis.Redis
) -> None:
    ids = [f"job-{i:02d}".encode() for i in range(40)]
    # Held: more than one window's worth at the head (other pods' running jobs), one further on.
    held = {*ids[: WINDOW_SPARE + 3], ids[14]}
    for job_id in held:
        redis_client.psetex(in_progress_key_prefix + job_id.decode(), 60_000, b"1")
    pickup = Pickup(arq_pool)
    got = await pickup.not_in_progress(ids, wanted=4)
    # Enough free ids for the 4 slots, oldest first, found across windows; then the ids no
    # window reached, unchecked, in order.
    checked = 2 * (4 + WINDOW_SPARE)
    assert got == [i for i in ids[:checked] if i not in held] + ids[checked:]
    assert got[:4] == [ids[11], ids[12], ids[13], ids[15]]
    assert await pickup.not_in_progress(ids, wanted=0) == ids  # full: arq fetches nothing
    assert await pickup.not_in_progress([], wanted=4) == []


def recording_worker(redis_url: str, ran: list[tuple[str, int]]) -> FleetWorker:
    """A FleetWorker whose `short` job appends (job id, score) to `ran` (its own list)."""

    async def short(ctx: dict[str, Any]) -> None:
        ran.append((ctx["job_id"], ctx["score"]))
        await asyncio.sleep(0.03)

    return FleetWorker(
        functions=[func(short, name="short")],
        redis_settings=RedisSettings.from_dsn(redis_url),
        health=Health(redis_stale_seconds=30.0),
        recorder=None,
        on_drain=lambda: None,
        max_jobs=2,
        poll_delay=0.02,
        keep_result=0,
        handle_signals=False,
    )


async def test_two_workers_started_together_share_one_backlog_in_order(
    redis_url: str, arq_pool: ArqRedis
) -> None:
    # A backlog with an order: due 1 ms apart, all due before the workers start.
    count, due_ms = 40, int(time.time() * 1000) - 1000
    for i in range(count):
        await arq_pool.enqueue_job("short", _job_id=f"j{i:02d}")
        await arq_pool.zadd("arq:queue", {f"j{i:02d}": due_ms + i})
    ran: tuple[list[tuple[str, int]], list[tuple[str, int]]] = ([], [])
    workers = [recording_worker(redis_url, ran[0]), recording_worker(redis_url, ran[1])]

    async def drained() -> bool:
        return len(ran[0]) + len(ran[1]) >= count and await arq_pool.zcard("arq:queue") == 0

    # Created at the same instant: both poll loops start on one grid, as pods started together.
    tasks = [asyncio.create_task(w.main()) for w in workers]
    try:
        await async_wait_for(drained, timeout=20, interval=0.02, what=f"{count} jobs run")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for w in workers:
            await w.pool.aclose(close_connection_pool=True)
    ids = [job_id for side in ran for job_id, _ in side]
    assert sorted(ids) == [f"j{i:02d}" for i in range(count)]  # each job once
    # Both took a real share: with 2 slots each, neither can run more than about half.
    assert min(len(side) for side in ran) >= count // 4, [len(side) for side in ran]
    # The filter keeps arq's order: each worker starts the oldest due job it can get first.
    for side in ran:
        scores = [score for _, score in side]
        assert scores == sorted(scores)


async def test_alone_on_the_queue_the_check_is_only_asked_every_few_fetches(
    arq_pool: ArqRedis, redis_client: redis.Redis
) -> None:
    ids = [f"job-{i}".encode() for i in range(6)]
    pickup = Pickup(arq_pool)
    assert await pickup.not_in_progress(ids, wanted=2) == ids  # nothing held
    redis_client.psetex(in_progress_key_prefix + "job-0", 60_000, b"1")
    for _ in range(SKIPS_WHEN_NONE_HELD):
        assert await pickup.not_in_progress(ids, wanted=2) == ids  # not asked
    assert await pickup.not_in_progress(ids, wanted=2) == ids[1:]  # asked again
    assert await pickup.not_in_progress(ids, wanted=2) == ids[1:]  # and on, while one is held
