"""arq's own test fixtures (its tests/conftest.py, arq 0.28), served by arqfleet: a real
redis-server of ours instead of a Docker container, and, by ARQFLEET_ARQ_SUITE_MODE, arq's
`Worker` replaced everywhere by arqfleet's `FleetWorker`:

* ``plain``: arq as it is (the baseline);
* ``fleet``: `FleetWorker` as the runtime builds it, without the extras;
* ``fleet-instrumented``: plus the per-job metrics wrapper and the dead-letter recorder, as
  every arqfleet pod runs.

Loaded by hack/arq-suite's conftest.py inside the cached copy of arq's tests; it runs in that
suite's own venv (arq's pinned test tools), never in ours.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import arq
import arq.worker
import msgpack
import pytest
import redis.exceptions
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.worker import func
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from arqfleet.worker.dead_letters import DeadLetterPolicy, DeadLetterRecorder, DeadLetterStore
from arqfleet.worker.health import Health
from arqfleet.worker.instrument import Instrument, JobCounts
from arqfleet.worker.metrics import WorkerMetrics
from arqfleet.worker.runtime import FleetWorker
from tests.support.redis_server import RedisServer

MODE = os.environ.get("ARQFLEET_ARQ_SUITE_MODE", "plain")
ArqWorker = arq.worker.Worker


class CompatFleetWorker(FleetWorker):
    """`FleetWorker` with arq's own constructor signature, as the tests call `Worker(...)`."""

    def __init__(self, functions: Any = (), *args: Any, **kwargs: Any) -> None:
        health = Health(redis_stale_seconds=30.0)
        counts = JobCounts()
        recorder = None
        if MODE == "fleet-instrumented":
            pool = kwargs.get("redis_pool")
            queue = kwargs.get("queue_name") or arq.constants.default_queue_name
            names = [func(f).name for f in functions or ()]
            names += [cj.name for cj in kwargs.get("cron_jobs") or ()]
            metrics = WorkerMetrics(
                names, in_progress=lambda: counts.in_flight, draining=lambda: 0.0
            )
            if pool is not None:
                recorder = DeadLetterRecorder(
                    DeadLetterStore(pool, queue),
                    DeadLetterPolicy(
                        max_entries=1000,
                        retention_seconds=3600.0,
                        args_repr_chars=200,
                        payload_max_bytes=65536,
                    ),
                    pod="arq-suite",
                    serializer=kwargs.get("job_serializer"),
                    on_result=lambda _function, _error: None,
                )
            instrument = Instrument(metrics, recorder, counts)
            functions = [instrument.wrap(func(f)) for f in functions or ()]
            kwargs["cron_jobs"] = [instrument.wrap(cj) for cj in kwargs.get("cron_jobs") or ()]
            super().__init__(
                functions, *args, health=health, recorder=recorder, on_drain=_nothing, **kwargs
            )
            instrument.bind(self)
            return
        super().__init__(
            functions, *args, health=health, recorder=None, on_drain=_nothing, **kwargs
        )


# arq's get_kwargs() picks a settings class's attributes by the parameters of
# `inspect.signature(Worker)`: ours must show arq's.
CompatFleetWorker.__signature__ = inspect.signature(ArqWorker)  # type: ignore[attr-defined]


def _nothing() -> None:
    return None


if MODE != "plain":
    # Before the test modules import it: `from arq.worker import Worker` then binds ours, and
    # arq's own run_worker/create_worker look the name up in arq.worker at call time.
    arq.worker.Worker = CompatFleetWorker  # type: ignore[misc]
    arq.Worker = CompatFleetWorker  # type: ignore[misc]


# -- arq's fixtures, same names and behaviour --------------------------------------------------


@pytest.fixture(name="loop")
def fix_loop(event_loop: asyncio.AbstractEventLoop) -> asyncio.AbstractEventLoop:
    return event_loop


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def test_redis_host(redis_server: RedisServer) -> str:
    return "127.0.0.1"


@pytest.fixture(scope="session")
def test_redis_port(redis_server: RedisServer) -> int:
    return redis_server.port


@pytest.fixture(scope="session")
def test_redis_settings(test_redis_host: str, test_redis_port: int) -> RedisSettings:
    return RedisSettings(host=test_redis_host, port=test_redis_port)


@pytest.fixture
async def arq_redis(test_redis_host: str, test_redis_port: int) -> AsyncIterator[ArqRedis]:
    redis_ = ArqRedis(host=test_redis_host, port=test_redis_port, encoding="utf-8")
    await redis_.flushall()
    yield redis_
    await redis_.close(close_connection_pool=True)


@pytest.fixture
async def arq_redis_msgpack(test_redis_host: str, test_redis_port: int) -> AsyncIterator[ArqRedis]:
    redis_ = ArqRedis(
        host=test_redis_host,
        port=test_redis_port,
        encoding="utf-8",
        job_serializer=msgpack.packb,
        job_deserializer=functools.partial(msgpack.unpackb, raw=False),
    )
    await redis_.flushall()
    yield redis_
    await redis_.close(close_connection_pool=True)


@pytest.fixture
async def arq_redis_retry(test_redis_host: str, test_redis_port: int) -> AsyncIterator[ArqRedis]:
    redis_ = ArqRedis(
        host=test_redis_host,
        port=test_redis_port,
        encoding="utf-8",
        retry=Retry(backoff=NoBackoff(), retries=3),
        retry_on_timeout=True,
        retry_on_error=[redis.exceptions.ConnectionError],
    )
    await redis_.flushall()
    yield redis_
    await redis_.close(close_connection_pool=True)


def _factory(pool: ArqRedis) -> tuple[Callable[..., Any], list[Any]]:
    made: list[Any] = []

    def create(
        functions: Any = (),
        burst: bool = True,
        poll_delay: float = 0,
        max_jobs: int = 10,
        arq_redis: ArqRedis = pool,
        **kwargs: Any,
    ) -> Any:
        worker_ = arq.worker.Worker(
            functions=functions,
            redis_pool=arq_redis,
            burst=burst,
            poll_delay=poll_delay,
            max_jobs=max_jobs,
            **kwargs,
        )
        made[:] = [worker_]
        return worker_

    return create, made


@pytest.fixture
async def worker(arq_redis: ArqRedis) -> AsyncIterator[Callable[..., Any]]:
    create, made = _factory(arq_redis)
    yield create
    if made:
        await made[0].close()


@pytest.fixture
async def worker_retry(arq_redis_retry: ArqRedis) -> AsyncIterator[Callable[..., Any]]:
    create, made = _factory(arq_redis_retry)
    yield create
    if made:
        await made[0].close()


@pytest.fixture(name="create_pool")
async def fix_create_pool(loop: asyncio.AbstractEventLoop) -> AsyncIterator[Any]:
    pools: list[ArqRedis] = []

    async def create_pool_(settings: RedisSettings, *args: Any, **kwargs: Any) -> ArqRedis:
        pool = await create_pool(settings, *args, **kwargs)
        pools.append(pool)
        return pool

    yield create_pool_
    await asyncio.gather(*[p.close(close_connection_pool=True) for p in pools])


@pytest.fixture(name="cancel_remaining_task")
def fix_cancel_remaining_task(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    async def cancel_remaining_task() -> None:
        tasks = asyncio.all_tasks(loop)
        cancelled = []
        for task in tasks:
            if "cancel_remaining_task()" not in repr(task):
                cancelled.append(task)
                task.cancel()
        if cancelled:
            print(f"Cancelled {len(cancelled)} ongoing tasks", file=sys.stderr)
            await asyncio.gather(*cancelled, return_exceptions=True)

    yield
    loop.run_until_complete(cancel_remaining_task())


class SetEnv:
    def __init__(self) -> None:
        self.envars: set[str] = set()

    def set(self, name: str, value: str) -> None:
        self.envars.add(name)
        os.environ[name] = value

    def clear(self) -> None:
        for n in self.envars:
            os.environ.pop(n)


@pytest.fixture
def env() -> Iterator[SetEnv]:
    setenv = SetEnv()
    yield setenv
    setenv.clear()
