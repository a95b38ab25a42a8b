"""Worker integration tests use the shared fixtures of tests/conftest.py: `start_worker`,
`arq_pool` and `redis_client`, all on a real redis-server of the test's own; and, here,
`start_app_worker` for apps other than the example app, and `msgpack_pool` to enqueue for the
msgpack example app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool
from examples.app.msgpack_worker import WorkerSettings as MsgpackSettings

from tests.support.worker_process import WorkerProcess

MSGPACK_SETTINGS = "examples.app.msgpack_worker.WorkerSettings"


@pytest.fixture
def start_app_worker(redis_url: str) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory: `start_app_worker(settings_path, **env)`; every worker is killed at the end."""
    started: list[WorkerProcess] = []

    def start(settings: str, **env: str) -> WorkerProcess:
        worker = WorkerProcess(redis_url, env=env, settings=settings).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
async def msgpack_pool(redis_url: str) -> AsyncIterator[ArqRedis]:
    """An arq client that serializes jobs the way the msgpack example app reads them."""
    pool = await create_pool(
        RedisSettings.from_dsn(redis_url),
        job_serializer=MsgpackSettings.job_serializer,
        job_deserializer=MsgpackSettings.job_deserializer,
    )
    yield pool
    await pool.aclose()
