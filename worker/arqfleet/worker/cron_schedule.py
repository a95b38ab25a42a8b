"""Pure: when the next cron tick of a worker's settings is, the tick the workers publish.

The earliest next tick over all cron jobs is what the operator must wake a worker for (see
`constants.cron_next_key`). It is computed from each `CronJob`'s fields with arq's own
`next_cron`, from `now` in the Worker's timezone, exactly as arq schedules a job on its first
heartbeat (`CronJob.calculate_next(now)`), so both agree on every field, weekday and zone rule.

It deliberately does not read `CronJob.next_run`, arq's running schedule: arq moves that on up to
two poll windows (about a second) *before* the tick fires, when it enqueues the tick as a deferred
job, and leaves it in the past while its heartbeat is late. The published tick is always the
one arq would schedule from `now`: after `now` and at most one period ahead (like arq, it skips a
tick in the same wall-clock second as `now`, which is then less than a second away).
`run_at_startup` does not change it either: that run is arq's business at start-up, not a tick
anyone must wake a worker for.

No I/O and no clock: the time is an argument.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from arq.cron import CronJob, next_cron


def next_tick(job: CronJob, now: datetime) -> datetime:
    """The job's next tick from `now`, in `now`'s timezone (what `calculate_next(now)` sets)."""
    return next_cron(
        now,
        month=job.month,
        day=job.day,
        weekday=job.weekday,
        hour=job.hour,
        minute=job.minute,
        second=job.second,
        microsecond=job.microsecond,
    )


def next_tick_ms(cron_jobs: Iterable[CronJob], now: datetime) -> int | None:
    """Epoch ms of the earliest next tick, or None when there are no cron jobs.

    `now` must be timezone-aware, in the Worker's timezone: the fields (hour, weekday...) are
    matched in that zone, as arq matches them.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (the Worker's timezone)")
    ticks = [next_tick(job, now) for job in cron_jobs]
    if not ticks:
        return None
    return round(min(ticks).timestamp() * 1000)
