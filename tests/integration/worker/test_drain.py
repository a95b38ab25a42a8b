"""SIGTERM drains, a drain deadline re-queues, SIGKILL loses nothing: real workers, real signals."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import cast

import redis
from arq.connections import ArqRedis

from arqfleet.worker.constants import dlq_entries_key, heartbeats_key
from tests.support.waiting import wait_for
from tests.support.worker_process import WorkerProcess

QUEUE = "arq:queue"


def records(client: redis.Redis, what: str) -> list[str]:
    return [raw.decode() for raw in cast(list[bytes], client.lrange(f"example:{what}", 0, -1))]


async def test_sigterm_lets_running_jobs_finish_then_exits_0(
    start_worker: Callable[..., WorkerProcess], arq_pool: ArqRedis, redis_client: redis.Redis
) -> None:
    drain = 5.0
    worker = start_worker(ARQFLEET_DRAIN_SECONDS=str(drain)).wait_ready()
    tags = [f"slow-{i}" for i in range(3)]
    for tag in tags:
        await arq_pool.enqueue_job("slow", tag, seconds=2.0)
    wait_for(lambda: len(records(redis_client, "started")) == 3, timeout=10, what="3 jobs running")

    sent = time.monotonic()
    worker.signal(signal.SIGTERM)
    wait_for(lambda: worker.get("/readyz")[0] == 503, timeout=2, what="readyz 503 after SIGTERM")
    assert worker.process is not None
    assert worker.process.poll() is None, "readiness must go false before the process exits"
    late = await arq_pool.enqueue_job("fast", "late")
    assert late is not None

    assert worker.wait_exit(timeout=drain + 2) == 0
    assert time.monotonic() - sent < drain
    # Each job completed exactly once and none was cut; the job enqueued after SIGTERM waits.
    assert sorted(records(redis_client, "done")) == tags
    assert redis_client.zscore(QUEUE, late.job_id) is not None
    assert redis_client.zcard(QUEUE) == 1
    # A clean exit removes this pod's heartbeat.
    assert not redis_client.hexists(heartbeats_key(QUEUE), worker.pod_name)


async def test_jobs_cut_by_the_drain_deadline_run_again_on_another_worker(
    start_worker: Callable[..., WorkerProcess], arq_pool: ArqRedis, redis_client: redis.Redis
) -> None:
    first = start_worker(ARQFLEET_DRAIN_SECONDS="0.5").wait_ready()
    tags = ["cut-0", "cut-1"]
    jobs = [await arq_pool.enqueue_job("slow", tag, seconds=2.0) for tag in tags]
    wait_for(lambda: len(records(redis_client, "started")) == 2, timeout=10, what="2 jobs running")

    first.signal(signal.SIGTERM)
    assert first.wait_exit(timeout=5) == 0
    log = first.log()
    for job in jobs:
        assert job is not None
        assert f"job {job.job_id} cut by the drain deadline" in log
    assert records(redis_client, "done") == []

    start_worker()
    wait_for(
        lambda: sorted(records(redis_client, "done")) == tags,
        timeout=15,
        what="cut jobs completed by the second worker",
    )
    assert sorted(records(redis_client, "started")) == sorted(tags * 2)
    wait_for(lambda: redis_client.zcard(QUEUE) == 0, timeout=5, what="queue empty")


async def test_jobs_of_a_sigkilled_worker_run_again_after_the_in_progress_ttl(
    start_worker: Callable[..., WorkerProcess], arq_pool: ArqRedis, redis_client: redis.Redis
) -> None:
    # arq's in-progress TTL is the largest job timeout + 10 s: 3 s keeps this test near 14 s.
    env = {"ARQFLEET_JOB_TIMEOUT_SECONDS": "3", "ARQFLEET_HEARTBEAT_SECONDS": "0.3"}
    victim = start_worker(**env).wait_ready()
    tags = ["killed-0", "killed-1"]
    jobs = [await arq_pool.enqueue_job("slow", tag, seconds=2.5) for tag in tags]
    wait_for(lambda: len(records(redis_client, "started")) == 2, timeout=10, what="2 jobs running")

    victim.signal(signal.SIGKILL)
    assert victim.wait_exit(timeout=5) == -signal.SIGKILL
    killed_at = time.monotonic()
    protected = [
        cast(int, redis_client.pttl(f"arq:in-progress:{job.job_id}")) for job in jobs if job
    ]
    assert all(ttl > 0 for ttl in protected), protected

    survivor = start_worker(**env)
    wait_for(
        lambda: sorted(records(redis_client, "done")) == tags,
        timeout=20,
        what="killed jobs completed by another worker",
    )
    # Not before arq's in-progress keys expired, and each job ran to completion once.
    assert time.monotonic() - killed_at >= min(protected) / 1000 - 0.1
    assert sorted(records(redis_client, "started")) == sorted(tags * 2)
    # The dead pod's heartbeat expired and the survivor's beat pruned it from the hash.
    wait_for(
        lambda: redis_client.hkeys(heartbeats_key(QUEUE)) == [survivor.pod_name.encode()],
        timeout=5,
        what="only the survivor's heartbeat left",
    )


async def test_drain_0_stops_at_once_says_so_and_arq_requeues_the_cut_job(
    start_worker: Callable[..., WorkerProcess], arq_pool: ArqRedis, redis_client: redis.Redis
) -> None:
    env = {"ARQFLEET_DRAIN_SECONDS": "0", "ARQFLEET_JOB_TIMEOUT_SECONDS": "30"}
    first = start_worker(**env).wait_ready()
    job = await arq_pool.enqueue_job("slow", "now-0", seconds=2.0)
    assert job is not None
    wait_for(lambda: records(redis_client, "started") == ["now-0"], timeout=10, what="job running")

    first.signal(signal.SIGTERM)
    assert first.wait_exit(timeout=5) == 0
    log = first.log()
    # No drain happened: the log must not describe one.
    assert "draining" not in log
    assert "up to 0" not in log
    assert "drain deadline" not in log
    assert "SIGTERM: stopping now" in log
    assert f"job {job.job_id} cut by an immediate stop: cancelled, re-queued" in log
    # What the log claims is what arq did: the job is still queued, no longer marked running.
    assert redis_client.zscore(QUEUE, job.job_id) is not None
    assert not redis_client.exists(f"arq:in-progress:{job.job_id}")
    start_worker(**env)
    wait_for(lambda: records(redis_client, "done") == ["now-0"], timeout=10, what="job ran again")


async def test_drain_0_without_retry_jobs_says_the_cut_job_is_not_requeued(
    start_worker: Callable[..., WorkerProcess], arq_pool: ArqRedis, redis_client: redis.Redis
) -> None:
    worker = start_worker(
        ARQFLEET_DRAIN_SECONDS="0", ARQFLEET_JOB_TIMEOUT_SECONDS="30", EXAMPLE_RETRY_JOBS="0"
    ).wait_ready()
    job = await arq_pool.enqueue_job("slow", "lost-0", seconds=2.0)
    assert job is not None
    wait_for(lambda: records(redis_client, "started") == ["lost-0"], timeout=10, what="running")

    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(timeout=5) == 0
    log = worker.log()
    assert f"job {job.job_id} cut by an immediate stop: cancelled, not re-queued" in log
    assert "re-queued by arq" not in log
    # arq finished it as failed: out of the queue, and recorded as a dead letter.
    assert redis_client.zscore(QUEUE, job.job_id) is None
    assert redis_client.hexists(dlq_entries_key(QUEUE), job.job_id)


async def test_a_second_sigint_stops_at_once_and_says_why(
    start_worker: Callable[..., WorkerProcess], arq_pool: ArqRedis, redis_client: redis.Redis
) -> None:
    worker = start_worker(
        ARQFLEET_DRAIN_SECONDS="30", ARQFLEET_JOB_TIMEOUT_SECONDS="60"
    ).wait_ready()
    job = await arq_pool.enqueue_job("slow", "ctrl-c", seconds=30.0)
    assert job is not None
    wait_for(lambda: records(redis_client, "started") == ["ctrl-c"], timeout=10, what="running")

    worker.signal(signal.SIGINT)
    wait_for(lambda: "draining" in worker.log(), timeout=5, what="drain started")
    sent = time.monotonic()
    worker.signal(signal.SIGINT)
    assert worker.wait_exit(timeout=5) == 0
    assert time.monotonic() - sent < 5
    log = worker.log()
    assert "SIGINT again: stopping now" in log
    assert f"job {job.job_id} cut by a second SIGINT: cancelled, re-queued" in log
    assert "drain deadline" not in log
    assert redis_client.zscore(QUEUE, job.job_id) is not None
