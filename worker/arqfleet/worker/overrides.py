"""How the pod's environment changes the user's arq settings into Worker arguments.

Decides precedence: arq's own selection of Worker arguments from the settings (class or dict,
exactly as `arq` does it), then every ARQFLEET_* value that is set wins. It must not mutate the
user's settings object or connect to anything.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from arq.connections import RedisSettings
from arq.worker import get_kwargs

from arqfleet.worker.settings import WorkerEnv


def effective_redis_settings(kwargs: dict[str, Any], env: WorkerEnv) -> RedisSettings:
    """The settings' RedisSettings with the env URL's address and credentials, if one is set.

    Connection tuning the user chose (timeouts, retries, TLS files) is kept.
    """
    base = kwargs.get("redis_settings") or RedisSettings()
    if env.redis_url is None:
        return base
    dsn = RedisSettings.from_dsn(env.redis_url)
    return dataclasses.replace(
        base,
        host=dsn.host,
        port=dsn.port,
        database=dsn.database,
        username=dsn.username,
        password=dsn.password,
        ssl=dsn.ssl,
        unix_socket_path=dsn.unix_socket_path,
        sentinel=False,
    )


def worker_kwargs(settings: type | dict[str, Any], env: WorkerEnv) -> dict[str, Any]:
    """arq Worker kwargs: arq's own selection from the settings, then the env overrides."""
    kwargs: dict[str, Any] = dict(get_kwargs(settings))
    if env.queue_name is not None:
        kwargs["queue_name"] = env.queue_name
    if env.max_jobs is not None:
        kwargs["max_jobs"] = env.max_jobs
    if env.job_timeout_seconds is not None:
        kwargs["job_timeout"] = env.job_timeout_seconds
    if env.poll_delay_seconds is not None:
        kwargs["poll_delay"] = env.poll_delay_seconds
    kwargs["job_completion_wait"] = env.effective_drain_seconds(kwargs.get("job_completion_wait"))
    # The runtime is PID 1 and owns the signals, whatever the settings say.
    kwargs["handle_signals"] = True
    # Burst mode exits when the queue is empty: under a Deployment that is a restart loop, and
    # scaling to zero is the operator's job.
    kwargs.pop("burst", None)
    return kwargs
