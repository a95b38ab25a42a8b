"""Enqueue a demo mix of the example app's jobs: ``python -m examples.app.enqueue [REDIS_URL]``.

Shows each arq feature the app exercises: plain, slow, retried, dead, deferred and deduplicated.
"""

from __future__ import annotations

import asyncio
import os
import sys

from arq import create_pool
from arq.connections import RedisSettings


async def enqueue_demo(redis_url: str, queue_name: str = "arq:queue") -> None:
    pool = await create_pool(RedisSettings.from_dsn(redis_url), default_queue_name=queue_name)
    try:
        for i in range(5):
            await pool.enqueue_job("fast", f"fast-{i}")
        await pool.enqueue_job("slow", "slow-0", seconds=5)
        await pool.enqueue_job("flaky", "flaky-0", failures=2, backoff=1)
        await pool.enqueue_job("always_fails", "dead-0", backoff=1)
        await pool.enqueue_job("remind", "deferred-0", _defer_by=10)
        # The same _job_id twice: arq keeps the first and refuses the second (returns None).
        first = await pool.enqueue_job("remind", "dedup-0", _job_id="reminder-42")
        second = await pool.enqueue_job("remind", "dedup-1", _job_id="reminder-42")
        print(f"dedup: first={first is not None} second={second is not None}")
    finally:
        await pool.aclose()


if __name__ == "__main__":
    url = (
        sys.argv[1]
        if len(sys.argv) > 1
        else os.environ.get("REDIS_URL", "redis://localhost:6379/0")
    )
    asyncio.run(enqueue_demo(url))
