"""A hundred drains: workers SIGTERMed (as a scale-down's kubelet does) while each runs jobs of
random length below the drain time. Every job is done exactly once; none is cut or lost."""

from __future__ import annotations

import random
import signal
from collections import Counter
from collections.abc import Callable
from typing import Any

from arq.connections import ArqRedis

from arqfleet.worker.constants import heartbeats_key, live_heartbeats, redis_time_ms
from tests.support.waiting import wait_for
from tests.support.worker_process import WorkerProcess

ROUNDS, WORKERS, SLOTS, DRAIN = 10, 10, 2, 5.0
# One job more than the slots per worker: a worker whose first job ends before the slowest worker
# has polled takes another from the queue instead of going idle, so all are busy at one instant.
JOBS_PER_WORKER = SLOTS + 1


def in_flight(client: Any, pods: list[str]) -> dict[str, int]:
    now, raw = client.time(), client.hgetall(heartbeats_key("arq:queue"))
    beats = {b.pod: b.in_flight for b in live_heartbeats(raw, redis_time_ms(now))}
    return {pod: beats.get(pod, 0) for pod in pods}


def done(client: Any) -> Counter[str]:
    return Counter(raw.decode() for raw in client.lrange("example:done", 0, -1))


async def test_a_hundred_drains_with_jobs_in_flight_lose_and_cut_nothing(
    start_worker: Callable[..., WorkerProcess], arq_pool: ArqRedis, redis_client: Any
) -> None:
    rng = random.Random(7)
    tags: list[str] = []
    drains = 0
    for round_ in range(ROUNDS):
        workers = [
            # Frequent beats so "a job in flight" is seen before short jobs end.
            start_worker(
                ARQFLEET_DRAIN_SECONDS=str(DRAIN),
                ARQFLEET_MAX_JOBS=str(SLOTS),
                ARQFLEET_HEARTBEAT_SECONDS="0.2",
            )
            for _ in range(WORKERS)
        ]
        for worker in workers:
            worker.wait_ready(timeout=60)
        for i in range(WORKERS * JOBS_PER_WORKER):
            tag = f"r{round_}-{i}"
            tags.append(tag)
            # Random lengths, all below the drain time: every one may finish in the drain, and
            # none ends before the beats see it.
            await arq_pool.enqueue_job("slow", tag, seconds=round(rng.uniform(1.0, DRAIN - 1), 2))
        pods = [w.pod_name for w in workers]
        wait_for(
            lambda pods=pods: all(in_flight(redis_client, pods).values()),  # type: ignore[misc]
            timeout=30,
            what=f"round {round_}: every worker with a job in flight",
        )
        for worker in workers:
            worker.signal(signal.SIGTERM)  # all at once, as a scale-down of the fleet
        for worker in workers:
            assert worker.wait_exit(timeout=DRAIN + 15) == 0, worker.log()
            log = worker.log()
            assert "cut by" not in log, log
            assert "cancelled" not in log, log
            drains += 1
    # What no worker had started before its SIGTERM is still queued: one more worker runs it.
    final = start_worker().wait_ready(timeout=60)
    wait_for(
        lambda: set(done(redis_client)) == set(tags),
        timeout=120,
        what="every job done",
    )
    final.signal(signal.SIGTERM)
    assert final.wait_exit(timeout=DRAIN + 15) == 0
    counts = done(redis_client)
    assert drains == ROUNDS * WORKERS == 100
    assert sorted(counts) == sorted(tags)  # none lost
    assert set(counts.values()) == {1}, {t: n for t, n in counts.items() if n != 1}  # none twice
    started = Counter(raw.decode() for raw in redis_client.lrange("example:started", 0, -1))
    assert set(started.values()) == {1}  # none cut and started again
