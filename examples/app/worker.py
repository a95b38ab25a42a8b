"""The example app's ARQ WorkerSettings, as a user would write them (no arqfleet imports).

``REDIS_URL`` is the app's own setting (arqfleet-worker's ARQFLEET_REDIS_URL wins over it).
``EXAMPLE_CRON_EVERY_SECONDS`` sets the cron period (a divisor of 60; 0 disables the cron job):
every minute by default, every second in the cron test. ``EXAMPLE_RETRY_JOBS=0`` turns arq's
retry_jobs off (a cancelled or Retry-raising job then fails for good).
"""

from __future__ import annotations

import os
from typing import ClassVar

from arq import cron, func
from arq.connections import RedisSettings
from examples.app.jobs import always_fails, boom, fast, flaky, fragile, remind, slow, tick


def _cron_jobs() -> list[object]:
    every = int(os.environ.get("EXAMPLE_CRON_EVERY_SECONDS", "60"))
    if every <= 0:
        return []
    return [cron(tick, second=set(range(0, 60, every)), microsecond=0)]


class WorkerSettings:
    functions: ClassVar = [
        fast,
        slow,
        flaky,
        func(always_fails, max_tries=3),
        boom,
        fragile,
        remind,
    ]
    cron_jobs: ClassVar = _cron_jobs()
    redis_settings = RedisSettings.from_dsn(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
    max_jobs = 10
    max_tries = 5
    job_timeout = 60
    keep_result = 60
    retry_jobs = os.environ.get("EXAMPLE_RETRY_JOBS", "1") != "0"
