"""The worker's last Redis writes after the drain, all bounded by one deadline.

Decides how long shutdown may wait on Redis and what is reported when Redis does not take the
writes: every step gets what is left of a budget of `ARQFLEET_SHUTDOWN_SECONDS`; a step that
times out or fails is abandoned, logged with what it leaves behind, and makes the exit code 1.
Without the bound, a Redis that accepts connections but never answers (a hung or partitioned
server; redis-py has no socket timeout by default) keeps the process until SIGKILL.
It must not decide which steps run or their order (that is `runtime`), and it never raises: the
process has to end whatever Redis does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger("arqfleet.worker")


class Shutdown:
    """Runs shutdown steps against one deadline and remembers the ones that did not complete."""

    def __init__(self, budget: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = budget
        self._clock = clock
        self._deadline = clock() + budget
        self.abandoned: list[str] = []

    async def step(self, name: str, work: Awaitable[Any], left_behind: str) -> bool:
        """Await `work` until the deadline; False (logged, remembered) if it did not complete.

        `asyncio.wait`, not `wait_for`: on timeout the step is cancelled without waiting for it
        to unwind, so even a step whose cleanup talks to the hung server cannot hold shutdown.
        """
        task = asyncio.ensure_future(work)
        done, _ = await asyncio.wait({task}, timeout=max(0.0, self._deadline - self._clock()))
        if not done:
            task.cancel()
            logger.warning(
                "shutdown: redis did not answer within %ss: gave up on %s (%s)",
                self.budget,
                name,
                left_behind,
            )
        elif task.cancelled():
            logger.warning("shutdown: %s was cancelled (%s)", name, left_behind)
        elif (exc := task.exception()) is not None:
            logger.warning(
                "shutdown: %s failed: %s: %s (%s)", name, type(exc).__name__, exc, left_behind
            )
        else:
            return True
        self.abandoned.append(name)
        return False
