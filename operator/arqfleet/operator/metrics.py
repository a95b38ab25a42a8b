"""The operator's Prometheus metrics (prefix arqfleet_). Labels never carry secrets or job data:
only namespace/name of JobQueues, causes and condition reasons."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILE_SECONDS = Histogram(
    "arqfleet_reconcile_duration_seconds",
    "Time to reconcile one JobQueue (render, apply, report status).",
    ["cause"],
    # Most reconciles are a few API round trips; the tail shows a slow or throttled API.
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "arqfleet_reconcile_errors",
    "Reconciles that failed, by error type.",
    ["error"],
    registry=REGISTRY,
)
REDIS_REACHABLE = Gauge(
    "arqfleet_redis_reachable",
    "1 if the JobQueue's Redis answered the operator's last PING, else 0.",
    ["namespace", "jobqueue"],
    registry=REGISTRY,
)
DRIFT_REPAIRS = Counter(
    "arqfleet_drift_repairs",
    "Deployments restored after an outside change or deletion.",
    ["kind"],
    registry=REGISTRY,
)
