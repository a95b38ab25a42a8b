"""The ARQ app both sides of the worker benchmark run: a no-op job and a 10 ms job.

Plain arq settings (no arqfleet imports), so bare `arq` and `arqfleet-worker` load the very same
class. Logging is at WARNING on both sides: per-job INFO lines would cost both the same and hide
the runtime's own overhead, which is what the benchmark measures.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, ClassVar

from arq.connections import RedisSettings


async def noop(ctx: dict[str, Any]) -> None:
    return None


async def sleep_10ms(ctx: dict[str, Any]) -> None:
    await asyncio.sleep(0.01)


class WorkerSettings:
    functions: ClassVar = [noop, sleep_10ms]
    redis_settings = RedisSettings.from_dsn(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
    # Each side of a paired run drains its own queue on the same Redis.
    queue_name = os.environ.get("BENCH_QUEUE", "arq:queue")
    max_jobs = int(os.environ.get("BENCH_MAX_JOBS", "50"))
    # arq's default 0.5 s poll timer caps throughput far below the CPU limit (ARCHITECTURE.md);
    # a 10 ms poll makes both runs CPU-bound, so per-job overhead shows in the ratio.
    poll_delay = 0.01
    keep_result = 0


LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "level": "WARNING"}},
    "loggers": {"arq": {"handlers": ["stderr"], "level": "WARNING"}},
}
