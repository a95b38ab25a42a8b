"""An app whose job serializer cannot encode exceptions (msgpack, as arq's docs show it).

arq stores the string 'unable to serialize result' as the result of every failure such an app
has, and hands it to `finish_failed_job`: the dead-letter bookkeeping must take it for what it is
and never end the worker, which plain arq would keep running.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import cast

import redis
from arq.connections import ArqRedis

from arqfleet.worker import constants as c
from tests.integration.worker.conftest import MSGPACK_SETTINGS
from tests.integration.worker.test_dead_letters import dead_count, dlq
from tests.support.waiting import wait_for
from tests.support.worker_process import WorkerProcess, metric

QUEUE = "arq:queue"
STARTED = c.METRIC_JOBS_STARTED + "_total"
FINISHED = c.METRIC_JOBS_FINISHED + "_total"
DEAD = c.METRIC_DEAD_LETTERS + "_total"


def running(worker: WorkerProcess) -> bool:
    """True while the worker runs; fails the test at once (with its log) if it has exited."""
    assert worker.process is not None
    if worker.process.poll() is not None:
        raise AssertionError(f"worker exited with {worker.process.returncode}:\n{worker.log()}")
    return True


def done(client: redis.Redis) -> list[str]:
    return [raw.decode() for raw in cast(list[bytes], client.lrange("example:done", 0, -1))]


async def test_failures_are_dead_letters_and_the_worker_keeps_running(
    start_app_worker: Callable[..., WorkerProcess],
    msgpack_pool: ArqRedis,
    redis_client: redis.Redis,
    redis_url: str,
) -> None:
    worker = start_app_worker(MSGPACK_SETTINGS).wait_ready()
    # Dies through Retry on its 3rd try (its real error is known then); at the 4th pick arq gives
    # up without running it and calls finish_failed_job with a result it could not serialize.
    retried = await msgpack_pool.enqueue_job("always_fails", "m", backoff=0.01)
    # A plain failure: arq does not retry it and stores the unserializable result itself.
    failed = await msgpack_pool.enqueue_job("boom", "m")
    # arq fails it without running it: only the string 'unable to serialize result' is known.
    unknown = await msgpack_pool.enqueue_job("no_such_function", "m")
    assert retried is not None
    assert failed is not None
    assert unknown is not None
    wait_for(
        lambda: (
            running(worker) and dead_count(redis_client) == 3 and redis_client.zcard(QUEUE) == 0
        ),
        timeout=10,
        what="three dead letters and an empty queue",
    )

    # The worker still takes jobs.
    await msgpack_pool.enqueue_job("fast", "after")
    wait_for(
        lambda: running(worker) and done(redis_client) == ["after"], timeout=5, what="next job"
    )

    entries = {
        job_id: json.loads(dlq(redis_url, "show", job_id).stdout)
        for job_id in (retried.job_id, failed.job_id, unknown.job_id)
    }
    assert entries[retried.job_id]["error_type"] == "ValueError"
    assert entries[retried.job_id]["error"] == "cannot process m"
    assert entries[retried.job_id]["tries"] == 3
    assert entries[failed.job_id]["error_type"] == "RuntimeError"
    assert entries[failed.job_id]["error"] == "boom m"
    lost = entries[unknown.job_id]
    assert lost["function"] == "no_such_function"
    assert "could not be serialized" in lost["error"]
    assert all(entry["requeueable"] for entry in entries.values())

    samples = worker.metrics()
    assert metric(samples, STARTED, function="always_fails") == 3
    assert metric(samples, FINISHED, function="always_fails", outcome="retry") == 3
    assert metric(samples, FINISHED, function="boom", outcome="failure") == 1
    for function in ("always_fails", "boom", "no_such_function"):
        assert metric(samples, DEAD, function=function) == 1, function
    assert metric(samples, FINISHED, function="fast", outcome="success") == 1
