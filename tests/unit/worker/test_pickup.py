"""The fetch phase stays inside the poll period, and a refused script falls back to plain arq."""

from __future__ import annotations

import random
from typing import Any

from arq.connections import RedisSettings
from redis.exceptions import NoPermissionError

from arqfleet.worker.health import Health
from arqfleet.worker.pickup import PAUSE_AFTER_REFUSAL_S, PHASE_SPAN, Pickup, fetch_phase
from arqfleet.worker.runtime import FleetWorker


async def noop(ctx: dict[str, Any]) -> None:
    return None


def fleet_worker(**kwargs: Any) -> FleetWorker:
    # Constructing connects to nothing: arq creates its pool in main(). Call it in a running
    # loop: arq takes asyncio.get_event_loop(), which would create (and leak) one otherwise.
    return FleetWorker(
        functions=[noop],
        redis_settings=RedisSettings(),
        health=Health(redis_stale_seconds=30.0),
        recorder=None,
        on_drain=lambda: None,
        **kwargs,
    )


def test_fetch_phase_spreads_over_three_quarters_of_the_period() -> None:
    rng = random.Random(7)
    phases = [fetch_phase(0.2, rng) for _ in range(2000)]
    # Within the period with room for the fetch itself, so the period never grows...
    assert all(0.0 <= p < PHASE_SPAN * 0.2 for p in phases)
    # ...and spread over that span, not bunched: pods get different moments.
    assert min(phases) < 0.01
    assert max(phases) > 0.14


async def test_each_worker_draws_its_own_phase_and_a_burst_worker_none() -> None:
    phases = {fleet_worker(poll_delay=0.5).fetch_phase for _ in range(5)}
    assert len(phases) == 5
    assert all(0.0 <= p < PHASE_SPAN * 0.5 for p in phases)
    assert fleet_worker(poll_delay=0.5, burst=True).fetch_phase == 0.0


class RefusingPool:
    """A pool whose Redis refuses scripts (an ACL without EVALSHA)."""

    def __init__(self) -> None:
        self.calls = 0

    def register_script(self, source: str) -> Any:
        async def refuse(keys: list[bytes]) -> list[int]:
            self.calls += 1
            raise NoPermissionError("this user has no permissions to run the 'evalsha' command")

        return refuse


async def test_refused_script_passes_every_id_on_and_is_asked_again_after_a_pause() -> None:
    pool = RefusingPool()
    now = [100.0]
    pickup = Pickup(pool, clock=lambda: now[0])  # type: ignore[arg-type]
    ids = [b"a", b"b", b"c"]
    assert await pickup.not_in_progress(ids, wanted=2) == ids
    now[0] += PAUSE_AFTER_REFUSAL_S - 1
    assert await pickup.not_in_progress(ids, wanted=2) == ids
    assert pool.calls == 1  # not asked every poll
    now[0] += 2
    assert await pickup.not_in_progress(ids, wanted=2) == ids
    assert pool.calls == 2  # asked again: the refusal may have been passing (maxmemory)
