"""OperatorSettings: the operator's one typed configuration, from ARQFLEET_* env and flags."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ARQFLEET_", extra="ignore")

    namespaces: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """ARQFLEET_NAMESPACES, comma-separated (or repeated --namespace). Empty: cluster-wide,
    which needs the ClusterRole; namespaced mode needs only a Role in each namespace."""

    liveness_host: str = "0.0.0.0"
    """Where kopf's liveness endpoint listens: all interfaces, for the kubelet's probe."""

    liveness_port: int = Field(default=8081, ge=1, le=65535)
    """ARQFLEET_LIVENESS_PORT: /healthz answers 200 while the API and Redis pools are healthy."""

    log_format: Literal["text", "json"] = "text"
    """ARQFLEET_LOG_FORMAT: `json` for log collectors (one object per line)."""

    verbose: bool = False
    """ARQFLEET_VERBOSE: debug logs from arqfleet and kopf."""

    kubeconfig: str | None = None
    """ARQFLEET_KUBECONFIG: a kubeconfig path; default in-cluster credentials, then ~/.kube."""

    watch_server_timeout_seconds: int = Field(default=300, ge=10)
    """Ask the API server to end each watch after this long. Reconnecting every few minutes
    is cheap and bounds how long a silently dead connection can hide events."""

    watch_client_timeout_seconds: int = Field(default=330, ge=10)
    """Give up on a watch request after this long: a little longer than the server timeout,
    so a server that never closes its side is noticed."""

    connect_timeout_seconds: float = Field(default=10, gt=0)
    """TCP/TLS connect timeout for the API server."""

    api_request_timeout_seconds: float = Field(default=30, gt=0)
    """Timeout of one API request that is not a watch (kopf's and arqfleet's own); transient
    failures (429, 5xx, timeouts) are tried up to three times with back-off."""

    metrics_port: int = Field(default=8080, ge=0, le=65535)
    """ARQFLEET_METRICS_PORT: Prometheus /metrics of the operator (0 turns it off)."""

    secret_recheck_seconds: float = Field(default=30, gt=0)
    """How soon to look again at a missing Redis Secret. Nothing watches Secrets (that would
    need list/watch on every Secret in the cluster), so a missing one is polled this often."""

    discovery_cache_seconds: float = Field(default=60, ge=0)
    """How long an API-discovery answer (is the PodMonitor CRD installed?) is reused."""

    max_concurrent_reconciles: int = Field(default=10, ge=1)
    """How many JobQueues are reconciled at once. At start-up every JobQueue comes at once
    (kopf lists them all): unbounded, 1,000 reconciles held their reads and writes in memory
    together, and that peak stayed in the process's heap for good."""

    probe_timeout_seconds: float = Field(default=3, gt=0)
    """Deadline of one probe round (every queue of one Redis, one pipeline). A Redis that has
    not answered by then is unreachable for this poll: its queues' replicas are held."""

    cron_wake_lead_seconds: float = Field(default=30, ge=0)
    """How long before a cron tick a fleet at zero gets a worker: time for a pod to be
    scheduled, pull its image and start its worker before the tick."""

    queue_status_seconds: float = Field(default=15, ge=0)
    """status.queue is rewritten at most this often while nothing else the scaler reports
    changes (counts going to or from zero are written at once). Metrics are exact every poll;
    this only keeps a busy queue from writing its JobQueue every poll."""

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [n.strip() for n in value.split(",") if n.strip()]
        return value

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces

    @property
    def liveness_endpoint(self) -> str:
        return f"http://{self.liveness_host}:{self.liveness_port}/healthz"
