"""How N pods of one queue pick up jobs without getting in each other's way.

Two things, both about the moment arq hands jobs to a pod, neither about which jobs run:

The fetch phase. arq polls on a fixed grid from the moment its poll loop starts, and a poll
that outlasts the period (a Redis stall, the end of an outage) restarts the grid at the moment
Redis answers, the same moment for every pod. Pods on one grid fetch the same ids at the same
instant and race for each of them; on a shared node they also wake together and queue for the
CPU. Each pod therefore fetches at its own fixed offset within the period (`fetch_phase`). A
fixed offset only moves the pod's grid: a job enqueued at a random time waits half a period on
average, as before, and the period does not grow, since arq's poll loop times the period from
the start of each iteration, offset included.

The in-progress filter (`Pickup`). Every pod's poll fetches the oldest due ids (ZRANGEBYSCORE),
and a job stays in the queue until it finishes, so with N pods the head of that list is the
jobs the other pods are running. arq tries each id in order with WATCH, EXISTS, ZSCORE and
UNWATCH (or MULTI/EXEC): about four round trips per id another pod already holds, before it
reaches a free one. With short jobs that walk, not the job, sets how fast a pod picks up work,
and it grows with N. One script call drops the held ids first, so the walk only meets ids that
were free a moment ago. It only filters: the order stays oldest first (the oldest due job is
still tried first, and its age stays a true signal), and arq's own check still decides every
start, so a job taken between the two is skipped by arq exactly as before.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix
from redis.exceptions import ResponseError

logger = logging.getLogger("arqfleet.worker")

# arq's pool has no read timeout; a Redis that cannot answer this in 5 s is failing, and the
# TimeoutError goes to the poll's outage handling like any Redis error.
TIMEOUT_S = 5.0
PHASE_SPAN = 0.75
PAUSE_AFTER_REFUSAL_S = 60.0
# Ids checked per script call beyond the free slots: room for a few held ones, so one call is
# usually enough, while a long fetched list (arq reads up to 5 x max_jobs) is not sent whole.
WINDOW_SPARE = 8
# Fetches that skip the check after one that found no held id.
SKIPS_WHEN_NONE_HELD = 3

# KEYS: the in-progress keys of the fetched ids, in the fetched order. Returns the 1-based
# positions of those that do not exist. Read-only, O(len(KEYS)), no writes to replicate.
_FREE_POSITIONS = """
local free = {}
for i, key in ipairs(KEYS) do
    if redis.call('EXISTS', key) == 0 then
        free[#free + 1] = i
    end
end
return free
"""


def fetch_phase(poll_delay_s: float, rng: random.Random | None = None) -> float:
    """This pod's offset of the fetch within the poll period: uniform in [0, 3/4 period).

    Up to 3/4 so that the offset plus the fetch and its starts still fit in the period (a longer
    iteration would make arq start the next poll late, lengthening the period).
    """
    return (rng or random).uniform(0.0, PHASE_SPAN) * poll_delay_s


class Pickup:
    """The fetched ids without those another try (any pod's, ours too) holds."""

    def __init__(self, pool: ArqRedis, clock: Callable[[], float] = time.monotonic) -> None:
        # redis-py sends EVALSHA and loads the script again after a Redis restart (NOSCRIPT).
        self._script = pool.register_script(_FREE_POSITIONS)
        self._clock = clock
        self._paused_until = float("-inf")
        self._skips = 0

    async def not_in_progress(self, job_ids: list[bytes], wanted: int) -> list[bytes]:
        """`job_ids` without held ones, enough of them to fill `wanted` slots, order kept.

        Checked a window at a time, each of `wanted` + WINDOW_SPARE ids (the script's cost
        grows with its keys), until `wanted` free ids are found; the ids after the last window
        follow unchecked, so arq has as many candidates as before should it lose races.
        """
        if wanted <= 0 or self._clock() < self._paused_until:
            return job_ids
        if self._skips:
            # Nothing was held last time: alone on the queue, the call would cost more than it
            # saves (a few % of a CPU at a 10 ms poll). Still asked every few polls.
            self._skips -= 1
            return job_ids
        free: list[bytes] = []
        window = wanted + WINDOW_SPARE
        checked = 0
        while checked < len(job_ids) and len(free) < wanted:
            chunk = job_ids[checked : checked + window]
            positions = await self._free_positions(chunk)
            if positions is None:  # refused: the rest unfiltered
                return free + job_ids[checked:]
            free += [chunk[int(i) - 1] for i in positions]
            checked += len(chunk)
        if len(free) == checked:
            self._skips = SKIPS_WHEN_NONE_HELD
        return free + job_ids[checked:]

    async def _free_positions(self, chunk: list[bytes]) -> list[int] | None:
        keys = [in_progress_key_prefix.encode() + job_id for job_id in chunk]
        try:
            positions: list[int] = await asyncio.wait_for(self._script(keys=keys), TIMEOUT_S)
        except ResponseError as exc:
            # Redis answered but refused the script: an ACL without EVALSHA, no Lua on a managed
            # Redis, scripts refused above maxmemory. The filter is only a shortcut: go on as
            # plain arq does, and ask again later rather than every poll.
            self._paused_until = self._clock() + PAUSE_AFTER_REFUSAL_S
            logger.warning(
                "redis refuses the pickup script (%s); trying every fetched id for %.0f s",
                exc,
                PAUSE_AFTER_REFUSAL_S,
            )
            return None
        return positions
