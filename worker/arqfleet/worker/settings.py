"""The worker runtime's environment: what the pod may override in the user's ARQ settings.

`WorkerEnv` is read once at start-up from ``ARQFLEET_*`` variables (the operator sets them on the
pod). A field left unset (None) keeps the value of the user's WorkerSettings; a value that is set
wins. This module only describes and validates configuration: it must not import the user's
code, touch Redis or read the clock.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Used when neither ARQFLEET_DRAIN_SECONDS nor the user's job_completion_wait is set: it fits in
# Kubernetes' default 30 s terminationGracePeriodSeconds with the ~15 s margin ARCHITECTURE.md asks
# for, so a pod that was not configured by the operator still drains instead of being SIGKILLed.
DEFAULT_DRAIN_SECONDS = 15.0


class WorkerEnv(BaseSettings):
    """Environment overrides for one worker process (prefix ``ARQFLEET_``)."""

    model_config = SettingsConfigDict(
        env_prefix="ARQFLEET_",
        use_attribute_docstrings=True,
        extra="ignore",
        frozen=True,
    )

    redis_url: str | None = None
    """ARQFLEET_REDIS_URL: ``redis://[user:password@]host:port/db``. Default: unset, keep the
    settings' redis_settings. When set it wins over redis_settings (host, port, db, credentials,
    TLS), because the JobQueue's Redis is the one the operator measures and scales on."""

    queue_name: str | None = None
    """ARQFLEET_QUEUE_NAME: the arq queue key. Default: unset, keep the settings' queue_name (or
    arq's ``arq:queue``). Set by the operator from spec.queueName."""

    max_jobs: int | None = Field(default=None, ge=1)
    """ARQFLEET_MAX_JOBS: jobs run at once by this pod. Default: unset, keep settings' max_jobs.
    The operator sizes replicas from it, so the pod must honour the same number."""

    job_timeout_seconds: float | None = Field(default=None, gt=0)
    """ARQFLEET_JOB_TIMEOUT_SECONDS: default job timeout, seconds (functions with their own
    timeout keep it). Default: unset, keep the settings' job_timeout. It bounds arq's in-progress
    key TTL (max timeout + 10 s), i.e. how soon a killed pod's jobs run again."""

    drain_seconds: float | None = Field(default=None, ge=0)
    """ARQFLEET_DRAIN_SECONDS: after SIGTERM, seconds that in-flight jobs may take to finish
    (arq's job_completion_wait) before they are cancelled (arq re-queues them unless the settings
    turn retry_jobs off). 0 means no drain: SIGTERM cancels the running jobs at once. Default: the
    settings' job_completion_wait if non-zero, else 15 s. Keep it >= job timeout so nothing that
    had time to finish is cut, and below the pod's terminationGracePeriodSeconds by ~15 s."""

    shutdown_seconds: float = Field(default=10.0, gt=0)
    """ARQFLEET_SHUTDOWN_SECONDS: after the drain, the most time the worker waits for Redis to
    take its last writes (cut jobs' results, heartbeat removal, pending dead letters, arq's close
    with the settings' on_shutdown) before it exits anyway, with code 1 and the writes it gave up
    on in its log. Default 10 s: it fits in the ~15 s margin between the drain and the pod's
    terminationGracePeriodSeconds, so a hung Redis never turns a shutdown into a SIGKILL."""

    poll_delay_seconds: float | None = Field(default=None, gt=0)
    """ARQFLEET_POLL_DELAY_SECONDS: arq poll_delay, seconds. Default: unset, keep the settings'
    (arq: 0.5 s). At arq's defaults the poll timer caps throughput (ARCHITECTURE.md)."""

    http_port: int = Field(default=8080, ge=0, le=65535)
    """ARQFLEET_HTTP_PORT: port of /healthz, /readyz and /metrics on all interfaces. Default 8080,
    the port the operator's probes and PodMonitor use."""

    pod_name: str = Field(default_factory=socket.gethostname, min_length=1)
    """ARQFLEET_POD_NAME: this pod's name in heartbeats and logs. Default: the hostname, which is
    the pod name in Kubernetes; the operator also sets it via the downward API."""

    heartbeat_seconds: float = Field(default=5.0, gt=0)
    """ARQFLEET_HEARTBEAT_SECONDS: seconds between heartbeats to Redis. Default 5, the operator's
    default poll period; a beat expires after 3 periods (constants.HEARTBEAT_TTL_BEATS)."""

    redis_stale_seconds: float = Field(default=30.0, gt=0)
    """ARQFLEET_REDIS_STALE_SECONDS: /healthz fails when Redis has not answered for this long.
    Default 30 s: long enough that a Redis failover does not restart every pod of the fleet at
    once, short enough that a pod stuck on a dead connection gets restarted."""

    dlq_max_entries: int = Field(default=10_000, ge=1)
    """ARQFLEET_DLQ_MAX_ENTRIES: cap of the queue's dead-letter store; the oldest go first.
    Default 10000, so a poison job enqueued in bulk cannot fill Redis memory."""

    dlq_retention_seconds: float = Field(default=7 * 24 * 3600.0, gt=0)
    """ARQFLEET_DLQ_RETENTION_SECONDS: dead letters older than this are dropped. Default 7 days,
    time for someone to look after a weekend."""

    dlq_args_repr_chars: int = Field(default=500, ge=16)
    """ARQFLEET_DLQ_ARGS_REPR_CHARS: cap on the stored repr of a dead job's arguments, characters.
    Default 500: enough to recognise a job, too little to copy a payload into the store."""

    dlq_payload_max_bytes: int = Field(default=256 * 1024, ge=0)
    """ARQFLEET_DLQ_PAYLOAD_MAX_BYTES: largest serialized job kept so that it can be requeued.
    Default 256 KiB; a bigger job is still recorded, but marked not requeueable. 0 keeps none."""

    log_level: str = "INFO"
    """ARQFLEET_LOG_LEVEL: level of the arq and arqfleet loggers. Default INFO, arq's own."""

    def effective_drain_seconds(self, settings_wait: float | None) -> float:
        """The drain time: env, else the settings' job_completion_wait if set, else the default."""
        if self.drain_seconds is not None:
            return self.drain_seconds
        if settings_wait:
            return float(settings_wait)
        return DEFAULT_DRAIN_SECONDS


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***``: URLs are logged, passwords never are."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
