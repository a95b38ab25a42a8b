"""The example app's job functions: each records what it did in Redis so tests can count runs.

Durations, failure counts and backoffs are arguments, so tests run them in milliseconds and the
demo in seconds. Records are Redis lists named ``example:<what>`` holding the job's tag.
"""

from __future__ import annotations

import asyncio
from typing import Any

from arq import Retry


async def _record(ctx: dict[str, Any], what: str, value: str) -> None:
    await ctx["redis"].rpush(f"example:{what}", value)


async def fast(ctx: dict[str, Any], tag: str = "") -> str:
    """Returns at once (the no-op job of the benchmark when `tag` is empty)."""
    if tag:
        await _record(ctx, "done", tag)
    return tag


async def slow(ctx: dict[str, Any], tag: str, seconds: float = 1.0) -> str:
    """Sleeps `seconds`; records when it starts and when it finishes."""
    await _record(ctx, "started", tag)
    await asyncio.sleep(seconds)
    await _record(ctx, "done", tag)
    return tag


async def flaky(ctx: dict[str, Any], tag: str, failures: int = 2, backoff: float = 0.1) -> str:
    """Fails its first `failures` tries, retried by arq with a linear backoff, then succeeds."""
    job_try: int = ctx["job_try"]
    if job_try <= failures:
        try:
            raise ConnectionError(f"upstream unavailable (try {job_try})")
        except ConnectionError as exc:
            raise Retry(defer=backoff * job_try) from exc
    await _record(ctx, "done", tag)
    return tag


async def always_fails(ctx: dict[str, Any], tag: str, backoff: float = 0.05) -> None:
    """Fails every try through Retry, so arq gives up after max_tries: a dead letter."""
    try:
        raise ValueError(f"cannot process {tag}")
    except ValueError as exc:
        raise Retry(defer=backoff * ctx["job_try"]) from exc


async def boom(ctx: dict[str, Any], tag: str) -> None:
    """Raises a plain exception, which arq does not retry: dead on its first try."""
    raise RuntimeError(f"boom {tag}")


async def fragile(ctx: dict[str, Any], tag: str) -> str:
    """Fails (not retried) while the key ``example:broken`` exists, else succeeds: a dead letter
    that runs fine once requeued after the "fix" (deleting the key)."""
    if await ctx["redis"].exists("example:broken"):
        raise RuntimeError(f"broken {tag}")
    await _record(ctx, "done", tag)
    return tag


async def remind(ctx: dict[str, Any], tag: str) -> str:
    """The job the demo enqueues deferred (``_defer_by``) and deduplicated (``_job_id``)."""
    await _record(ctx, "done", tag)
    return tag


async def tick(ctx: dict[str, Any]) -> None:
    """The cron job: records the tick it runs for (its score, in epoch ms)."""
    await _record(ctx, "ticks", str(ctx["score"]))
