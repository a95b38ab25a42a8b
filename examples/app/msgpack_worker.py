"""The example app with msgpack as its job serializer, the way arq's docs show it.

msgpack cannot encode exceptions, so arq stores the string 'unable to serialize result' as the
result of a failed job. The tests run this app to prove that arqfleet-worker keeps running through
such failures, records them as dead letters, and that `arqfleet dlq requeue --settings
examples.app.msgpack_worker.WorkerSettings` writes jobs this app can read.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

# msgpack ships no type information; `unused-ignore` keeps mypy quiet should the project's
# mypy overrides come to ignore msgpack's missing types everywhere.
import msgpack  # type: ignore[import-untyped,unused-ignore]
from arq import func
from arq.connections import RedisSettings
from examples.app.jobs import always_fails, boom, fast, fragile, slow


def unpack(data: bytes) -> Any:
    """arq's docs write this as a lambda; raw=False turns msgpack strings back into str."""
    return msgpack.unpackb(data, raw=False)


class WorkerSettings:
    functions: ClassVar = [fast, slow, func(always_fails, max_tries=3), boom, fragile]
    redis_settings = RedisSettings.from_dsn(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
    job_serializer = msgpack.packb
    job_deserializer = unpack
    max_jobs = 10
    max_tries = 5
    job_timeout = 60
    keep_result = 60
