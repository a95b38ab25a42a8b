"""Metrics after a known mix of jobs, and probes through a real Redis outage."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import redis
from arq.connections import ArqRedis

from arqfleet.worker import constants as c
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_for
from tests.support.worker_process import Samples, WorkerProcess, metric

STARTED = c.METRIC_JOBS_STARTED + "_total"
FINISHED = c.METRIC_JOBS_FINISHED + "_total"
DEAD = c.METRIC_DEAD_LETTERS + "_total"


def observed(samples: Samples) -> dict[str, float]:
    """The values this test predicts, by a readable key."""
    values = {}
    for fn in ("fast", "boom", "flaky", "slow"):
        values[f"started {fn}"] = metric(samples, STARTED, function=fn)
        values[f"duration count {fn}"] = metric(
            samples, c.METRIC_JOB_DURATION + "_count", function=fn
        )
        values[f"wait count {fn}"] = metric(samples, c.METRIC_QUEUE_WAIT + "_count", function=fn)
        values[f"dead {fn}"] = metric(samples, DEAD, function=fn)
        for outcome in c.OUTCOMES:
            value = metric(samples, FINISHED, function=fn, outcome=outcome)
            if value:
                values[f"{outcome} {fn}"] = value
    values["in progress"] = metric(samples, c.METRIC_IN_PROGRESS)
    values["draining"] = metric(samples, c.METRIC_DRAINING)
    for op in ("poll", "heartbeat", "dead_letter"):
        values[f"redis errors {op}"] = metric(
            samples, c.METRIC_REDIS_ERRORS + "_total", operation=op
        )
    return values


async def test_metrics_match_a_known_mix_of_jobs(
    start_worker: Callable[..., WorkerProcess], arq_pool: ArqRedis, redis_client: redis.Redis
) -> None:
    worker = start_worker(ARQFLEET_JOB_TIMEOUT_SECONDS="0.5").wait_ready()
    for i in range(3):
        await arq_pool.enqueue_job("fast", f"fast-{i}")
    await arq_pool.enqueue_job("boom", "boom-0")
    await arq_pool.enqueue_job("flaky", "flaky-0", failures=2, backoff=0.05)
    await arq_pool.enqueue_job("slow", "slow-0", seconds=5)  # cut by the 0.5 s timeout

    expected = {
        **{f"started {fn}": n for fn, n in (("fast", 3), ("boom", 1), ("flaky", 3), ("slow", 1))},
        **{
            f"duration count {fn}": n
            for fn, n in (("fast", 3), ("boom", 1), ("flaky", 3), ("slow", 1))
        },
        **{
            f"wait count {fn}": n for fn, n in (("fast", 3), ("boom", 1), ("flaky", 3), ("slow", 1))
        },
        "success fast": 3,
        "failure boom": 1,
        "retry flaky": 2,
        "success flaky": 1,
        "timeout slow": 1,
        # Failures arq does not retry are dead letters; retried jobs that succeed are not.
        "dead fast": 0,
        "dead boom": 1,
        "dead flaky": 0,
        "dead slow": 1,
        "in progress": 0,
        "draining": 0,
        "redis errors poll": 0,
        "redis errors heartbeat": 0,
        "redis errors dead_letter": 0,
    }
    wait_for(
        lambda: observed(worker.metrics()) == expected,
        timeout=10,
        what="metrics of the job mix",
    )
    assert cast(int, redis_client.zcard("arq:queue")) == 0
    # No job argument ever reaches a label.
    _, body = worker.get("/metrics")
    assert "fast-0" not in body
    assert "slow-0" not in body


def test_probes_follow_a_redis_outage(
    start_worker: Callable[..., WorkerProcess], redis_server: RedisServer
) -> None:
    worker = start_worker(ARQFLEET_REDIS_STALE_SECONDS="1.5").wait_ready()
    assert worker.get("/healthz")[0] == 200

    redis_server.stop()
    wait_for(lambda: worker.get("/readyz")[0] == 503, timeout=3, what="readyz 503 without redis")
    assert "redis unreachable" in worker.get("/readyz")[1]
    wait_for(lambda: worker.get("/healthz")[0] == 503, timeout=5, what="healthz 503 when stale")
    assert metric(worker.metrics(), c.METRIC_REDIS_ERRORS + "_total", operation="poll") > 0
    assert worker.process is not None
    assert worker.process.poll() is None, "a Redis outage must not end the worker"

    redis_server.start()
    wait_for(lambda: worker.get("/readyz")[0] == 200, timeout=10, what="readyz 200 again")
    assert worker.get("/healthz")[0] == 200
