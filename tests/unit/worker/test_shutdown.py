"""The shutdown deadline: steps that hang or fail are abandoned in time and named."""

from __future__ import annotations

import asyncio
import time

from arqfleet.worker.shutdown import Shutdown


async def test_steps_share_one_deadline_and_the_abandoned_are_named() -> None:
    never = asyncio.Event()  # stands for a Redis that accepts a command and never answers

    async def fails() -> None:
        raise ConnectionError("refused")

    shutdown = Shutdown(budget=0.2)
    began = time.monotonic()
    assert await shutdown.step("quick", asyncio.sleep(0), "nothing") is True
    assert await shutdown.step("hangs", never.wait(), "left behind") is False
    assert await shutdown.step("after the deadline", never.wait(), "left behind") is False
    assert await shutdown.step("fails", fails(), "left behind") is False
    # The second hanging step gets no time of its own: the budget is shared.
    assert time.monotonic() - began < 0.2 + 0.15
    assert shutdown.abandoned == ["hangs", "after the deadline", "fails"]


async def test_a_step_is_not_awaited_past_the_deadline_even_if_its_cleanup_blocks() -> None:
    never = asyncio.Event()

    async def stubborn() -> None:
        try:
            await never.wait()
        finally:
            # Like a cleanup that talks to the hung server once more.
            await asyncio.shield(never.wait())

    shutdown = Shutdown(budget=0.1)
    began = time.monotonic()
    assert await shutdown.step("stubborn", stubborn(), "left behind") is False
    assert time.monotonic() - began < 0.1 + 0.15
    never.set()  # let the abandoned task end before the test's loop closes
