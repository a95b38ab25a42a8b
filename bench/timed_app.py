"""The ARQ app of the cluster benchmarks: one job that sleeps and records when it began.

Plain arq settings, as a user writes them. The start instant is the worker host's wall clock;
the local node's containers share the driver's machine (and clock), so it compares with the
enqueue times. bench/Dockerfile puts it on the worker image.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, ClassVar

from arq.connections import RedisSettings


async def timed(ctx: dict[str, Any], tag: str, seconds: float) -> None:
    await ctx["redis"].hset("validate:started", tag, repr(time.time()))
    await asyncio.sleep(seconds)
    await ctx["redis"].rpush("validate:done", tag)


class WorkerSettings:
    functions: ClassVar = [timed]
    redis_settings = RedisSettings.from_dsn(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
    max_jobs = 10
    keep_result = 0
