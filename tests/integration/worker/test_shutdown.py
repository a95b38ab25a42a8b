"""Shutdown is bounded: a Redis that stops answering cannot keep the worker alive until SIGKILL."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import redis
from arq.connections import ArqRedis

from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_for
from tests.support.worker_process import WorkerProcess


async def test_sigterm_with_a_hung_redis_ends_in_bounded_time_and_says_so(
    start_worker: Callable[..., WorkerProcess],
    arq_pool: ArqRedis,
    redis_client: redis.Redis,
    redis_server: RedisServer,
) -> None:
    drain, budget = 1.0, 2.0
    worker = start_worker(
        ARQFLEET_DRAIN_SECONDS=str(drain),
        ARQFLEET_SHUTDOWN_SECONDS=str(budget),
        ARQFLEET_JOB_TIMEOUT_SECONDS="30",
        # A cut job is then a dead letter: the shutdown has one to write as well.
        EXAMPLE_RETRY_JOBS="0",
    ).wait_ready()
    await arq_pool.enqueue_job("slow", "hung", seconds=20.0)
    wait_for(lambda: redis_client.llen("example:started") == 1, timeout=10, what="job running")

    assert redis_server.process is not None
    redis_pid = redis_server.process.pid
    os.kill(redis_pid, signal.SIGSTOP)  # a real hang: connections are accepted, nothing answers
    try:
        sent = time.monotonic()
        worker.signal(signal.SIGTERM)
        code = worker.wait_exit(timeout=drain + budget + 10)
        elapsed = time.monotonic() - sent
    finally:
        os.kill(redis_pid, signal.SIGCONT)

    log = worker.log()
    # The drain, then at most the shutdown budget (plus process exit), never an endless wait.
    assert elapsed < drain + budget + 3, log
    assert code == 1, log
    assert f"redis did not answer within {budget}s" in log
    for step in ("cut jobs' last writes", "heartbeat removal", "dead letters", "arq's close"):
        assert step in log, step
    assert "exit code 1: shutdown incomplete" in log
