"""The example app's image, run the way the operator's pods run it: read-only root, a tmpfs
/tmp, no capabilities, no privilege escalation, the image's own user. It serves its probes,
and `podman stop` (SIGTERM to PID 1) in the middle of a job lets the job finish: exit 0."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from arq.connections import ArqRedis
from arq.jobs import JobStatus

from localcluster import free_port
from tests.support.containers import Container, Containers, http_status, wait_http_ok
from tests.support.redis_server import RedisServer
from tests.support.waiting import async_wait_for

pytestmark = pytest.mark.containers

DRAIN_SECONDS = 10
JOB_SECONDS = 3.0


def run_example(containers: Containers, image: str, redis_url: str, http_port: int) -> Container:
    return containers.run(
        image,
        options=[
            "--network=host",  # the test's redis-server listens on the host's loopback
            "--read-only",
            "--tmpfs=/tmp",
            "--cap-drop=ALL",
            "--security-opt=no-new-privileges",
            f"--env=ARQFLEET_REDIS_URL={redis_url}",
            f"--env=ARQFLEET_HTTP_PORT={http_port}",
            f"--env=ARQFLEET_DRAIN_SECONDS={DRAIN_SECONDS}",
        ],
    )


async def test_example_image_serves_probes_and_drains_a_job_on_podman_stop(
    images: dict[str, str],
    containers: Containers,
    redis_server: RedisServer,
    arq_pool: ArqRedis,
) -> None:
    port = free_port()
    container = await asyncio.to_thread(
        run_example, containers, images["example"], redis_server.url, port
    )
    base = f"http://127.0.0.1:{port}"
    await wait_http_ok(container, f"{base}/healthz", seconds=30)
    assert await http_status(f"{base}/readyz") == 200

    uid = (await asyncio.to_thread(container.exec, "id", "-u")).strip()
    assert uid.isdigit(), uid
    assert int(uid) != 0
    pid1 = await asyncio.to_thread(container.exec, "cat", "/proc/1/cmdline")
    assert "arqfleet-worker" in pid1.split("\0")[1], pid1  # python3 /venv/bin/arqfleet-worker

    job = await arq_pool.enqueue_job("slow", "in-image", seconds=JOB_SECONDS)
    assert job is not None
    async with aioredis.Redis.from_url(redis_server.url) as client:

        async def started() -> bool:
            return bool(await client.lrange("example:started", 0, -1))

        await async_wait_for(started, timeout=30, what="the job to start in the container")
        assert await client.lrange("example:done", 0, -1) == []  # SIGTERM comes mid-job
        # podman would SIGKILL (exit 137) only after 20 s, well past the job's end.
        code = await asyncio.to_thread(container.stop, 20)
        logs = await asyncio.to_thread(container.logs)
        assert code == 0, logs
        assert await client.lrange("example:done", 0, -1) == [b"in-image"], logs
    assert await job.status() == JobStatus.complete
    assert "1 finished" in logs  # the runtime's own account of its drain
