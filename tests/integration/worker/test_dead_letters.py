"""Dead letters: recorded after max tries, listed, shown, requeued and purged with the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any, cast

import redis
from arq.connections import ArqRedis
from arq.jobs import Job, JobStatus
from examples.app.msgpack_worker import WorkerSettings as MsgpackSettings

from arqfleet.worker import constants as c
from tests.integration.worker.conftest import MSGPACK_SETTINGS
from tests.support.redis_server import RedisServer
from tests.support.waiting import async_wait_for, wait_for
from tests.support.worker_process import REPO_ROOT, WorkerProcess, metric, subprocess_env

QUEUE = "arq:queue"
STARTED = c.METRIC_JOBS_STARTED + "_total"


def dlq(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "arqfleet.worker.cli",
            "dlq",
            *args,
            "--queue",
            QUEUE,
            "--redis",
            redis_url,
        ],
        cwd=REPO_ROOT,
        env=subprocess_env({}),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def dead_count(client: redis.Redis) -> int:
    return cast(int, client.zcard(c.dlq_index_key(QUEUE)))


async def test_always_failing_job_is_dead_after_max_tries_and_requeue_runs_it_again(
    start_worker: Callable[..., WorkerProcess],
    arq_pool: ArqRedis,
    redis_client: redis.Redis,
    redis_url: str,
) -> None:
    worker = start_worker(ARQFLEET_DLQ_ARGS_REPR_CHARS="40").wait_ready()
    job = await arq_pool.enqueue_job("always_fails", "x" * 1000, backoff=0.01)
    assert job is not None
    wait_for(lambda: dead_count(redis_client) == 1, timeout=10, what="one dead letter")
    # Only after arq has given up: the job has left the queue, after max_tries=3 tries.
    wait_for(lambda: redis_client.zcard(QUEUE) == 0, timeout=5, what="job out of the queue")
    assert metric(worker.metrics(), STARTED, function="always_fails") == 3

    listing = dlq(redis_url, "list")
    assert listing.returncode == 0, listing.stderr
    assert job.job_id in listing.stdout
    assert "ValueError" in listing.stdout

    shown = dlq(redis_url, "show", job.job_id)
    assert shown.returncode == 0, shown.stderr
    entry = json.loads(shown.stdout)
    assert entry["function"] == "always_fails"
    assert entry["tries"] == 3
    assert entry["error_type"] == "ValueError"
    assert entry["error"].startswith("cannot process xxx")
    assert entry["requeueable"] is True
    assert len(entry["args_repr"]) <= 40  # capped, whatever the argument's size

    requeued = dlq(redis_url, "requeue", job.job_id)
    assert requeued.returncode == 0, requeued.stderr
    new_id = requeued.stdout.strip().rsplit(" ", 1)[-1]
    assert new_id != job.job_id
    # The copy runs again with the same function and arguments, fails 3 more times, and dies.
    wait_for(
        lambda: metric(worker.metrics(), STARTED, function="always_fails") == 6,
        timeout=10,
        what="requeued job ran its tries again",
    )
    wait_for(lambda: dead_count(redis_client) == 1, timeout=5, what="the copy is the dead letter")
    again = json.loads(dlq(redis_url, "show", new_id).stdout)
    assert again["args_repr"] == entry["args_repr"]
    assert dlq(redis_url, "show", job.job_id).returncode == 1

    purged = dlq(redis_url, "purge", "--all")
    assert purged.returncode == 0, purged.stderr
    assert "purged 1" in purged.stdout
    assert dead_count(redis_client) == 0


def test_cli_never_prints_the_redis_password() -> None:
    result = dlq("redis://user:s3cret-pw@127.0.0.1:1/0", "list")
    assert result.returncode == 1
    assert "s3cret-pw" not in result.stdout + result.stderr
    assert "***" in result.stderr


async def test_requeue_writes_the_job_with_the_apps_serializer_once(
    start_app_worker: Callable[..., WorkerProcess],
    msgpack_pool: ArqRedis,
    redis_client: redis.Redis,
    redis_url: str,
) -> None:
    redis_client.set("example:broken", "1")
    start_app_worker(MSGPACK_SETTINGS).wait_ready()
    job = await msgpack_pool.enqueue_job("fragile", "mp")
    assert job is not None
    wait_for(lambda: dead_count(redis_client) == 1, timeout=10, what="one dead letter")
    redis_client.delete("example:broken")  # the "fix"

    # Without the app's settings the CLI cannot read a msgpack job: it says what to pass and
    # changes nothing.
    blind = dlq(redis_url, "requeue", job.job_id)
    assert blind.returncode == 1
    assert "--settings" in blind.stderr
    assert dead_count(redis_client) == 1
    assert redis_client.zcard(QUEUE) == 0

    requeued = dlq(redis_url, "requeue", job.job_id, "--settings", MSGPACK_SETTINGS)
    assert requeued.returncode == 0, requeued.stderr
    new_id = requeued.stdout.strip().rsplit(" ", 1)[-1]
    copy = Job(new_id, msgpack_pool, _deserializer=MsgpackSettings.job_deserializer)

    async def complete() -> bool:
        return await copy.status() == JobStatus.complete

    await async_wait_for(complete, timeout=10, what="requeued job complete")
    info = await copy.result_info()
    assert info is not None
    assert (info.success, info.result) == (True, "mp")
    assert dead_count(redis_client) == 0
    # Requeueing the same dead letter again cannot enqueue a second copy.
    twice = dlq(redis_url, "requeue", job.job_id, "--settings", MSGPACK_SETTINGS)
    assert twice.returncode == 1
    assert "already requeued" in twice.stderr
    assert cast(list[bytes], redis_client.lrange("example:done", 0, -1)) == [b"mp"]


async def test_a_requeue_cut_between_its_writes_neither_loses_nor_duplicates_the_job(
    start_worker: Callable[..., WorkerProcess],
    arq_pool: ArqRedis,
    redis_client: redis.Redis,
    redis_server: RedisServer,
    redis_url: str,
) -> None:
    redis_client.set("example:broken", "1")
    start_worker().wait_ready()
    job = await arq_pool.enqueue_job("fragile", "once")
    assert job is not None
    wait_for(lambda: dead_count(redis_client) == 1, timeout=10, what="one dead letter")
    redis_client.delete("example:broken")

    # A real fault between a requeue's writes, no mock: this Redis user may write arq's keys but
    # only read the dead-letter store, so the requeue fails where it touches the store, as it
    # would on a connection dropped halfway.
    admin: Any = redis_client  # redis-py leaves execute_command untyped
    admin.execute_command(
        "ACL", "SETUSER", "requeuer", "on", ">pw", "~arq:*", "%R~arqfleet:*", "+@all"
    )
    cut = dlq(f"redis://requeuer:pw@127.0.0.1:{redis_server.port}/0", "requeue", job.job_id)
    assert cut.returncode != 0
    assert dead_count(redis_client) == 1, "a failed requeue must leave the dead letter"

    # Retried by someone allowed to: the job runs exactly once in all.
    again = dlq(redis_url, "requeue", job.job_id)
    assert again.returncode == 0, again.stderr
    wait_for(
        lambda: redis_client.zcard(QUEUE) == 0 and cast(int, redis_client.llen("example:done")),
        timeout=10,
        what="every enqueued copy finished",
    )
    assert cast(list[bytes], redis_client.lrange("example:done", 0, -1)) == [b"once"]
    assert dead_count(redis_client) == 0
