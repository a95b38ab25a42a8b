"""Pure: when the next cron tick of a worker's settings is, as arq itself schedules it.

arq fires each `CronJob` at its `next_run`, which it sets on its first heartbeat and moves on
after each tick (`CronJob.calculate_next`, in the Worker's timezone). The earliest over all
cron jobs is what the operator must wake a worker for (see `constants.cron_next_key`). Before
arq has scheduled a job, its next tick is computed the same way arq will. No I/O; the time is
an argument.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from arq.cron import CronJob, next_cron


def next_tick(job: CronJob, now: datetime) -> datetime:
    """The job's next tick: arq's own schedule once it has one, else what arq will schedule
    on its first heartbeat (`CronJob.calculate_next(now)`)."""
    if job.next_run is not None:
        return job.next_run
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
    """Epoch ms of the earliest next tick (`now` timezone-aware), or None without cron jobs."""
    ticks = [next_tick(job, now) for job in cron_jobs]
    if not ticks:
        return None
    return round(min(ticks).timestamp() * 1000)
