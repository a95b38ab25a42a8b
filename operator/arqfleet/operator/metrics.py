"""The operator's Prometheus metrics (prefix arqfleet_). Labels never carry secrets or job data:
only namespace/name of JobQueues, causes and condition reasons."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

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

# -- the scaling loop: per JobQueue (labels namespace, jobqueue) --------------------------------
_QUEUE = ["namespace", "jobqueue"]
QUEUE_READY = Gauge(
    "arqfleet_queue_ready_jobs", "Jobs due and not running.", _QUEUE, registry=REGISTRY
)
QUEUE_DEFERRED = Gauge(
    "arqfleet_queue_deferred_jobs", "Jobs due later (deferred).", _QUEUE, registry=REGISTRY
)
QUEUE_RUNNING = Gauge("arqfleet_queue_running_jobs", "Jobs in progress.", _QUEUE, registry=REGISTRY)
QUEUE_OLDEST = Gauge(
    "arqfleet_queue_oldest_ready_seconds",
    "Age of the oldest job that is due and not running (0 when none).",
    _QUEUE,
    registry=REGISTRY,
)
QUEUE_DEAD_LETTERS = Gauge(
    "arqfleet_queue_dead_letters", "Jobs in the dead-letter store.", _QUEUE, registry=REGISTRY
)
REPLICAS_DESIRED = Gauge(
    "arqfleet_replicas_desired", "Replicas the scaler wants.", _QUEUE, registry=REGISTRY
)
REPLICAS_CURRENT = Gauge(
    "arqfleet_replicas_current", "The worker Deployment's spec.replicas.", _QUEUE, registry=REGISTRY
)
REPLICAS_READY = Gauge(
    "arqfleet_replicas_ready",
    "The worker Deployment's ready replicas (status.readyReplicas).",
    _QUEUE,
    registry=REGISTRY,
)
REPLICAS_RECOMMENDED = Gauge(
    "arqfleet_replicas_recommended",
    "What the queue alone asks for, before stabilization windows, step policies and bounds.",
    _QUEUE,
    registry=REGISTRY,
)
REPLICAS_MIN = Gauge(
    "arqfleet_replicas_min", "The JobQueue's scaling.minReplicas.", _QUEUE, registry=REGISTRY
)
REPLICAS_MAX = Gauge(
    "arqfleet_replicas_max", "The JobQueue's scaling.maxReplicas.", _QUEUE, registry=REGISTRY
)
QUEUE_MAX_WAIT = Gauge(
    "arqfleet_queue_max_wait_seconds",
    "The JobQueue's scaling.maxWaitSeconds (no series when it has none).",
    _QUEUE,
    registry=REGISTRY,
)
SCALING_LIMITED = Gauge(
    "arqfleet_scaling_limited",
    "1 while the desired replicas are held back by min/maxReplicas or a step policy.",
    _QUEUE,
    registry=REGISTRY,
)
SCALE_EVENTS = Counter(
    "arqfleet_scale_events",
    "Replica changes made by the scaler, by direction (up/down) and reason.",
    [*_QUEUE, "direction", "reason"],
    registry=REGISTRY,
)
PROBE_SKIPPED = Counter(
    "arqfleet_probe_skipped_members",
    "Due members of a queue that are not arq jobs (no job key): skipped, never scaled for.",
    _QUEUE,
    registry=REGISTRY,
)
PROBE_BAD_HEARTBEATS = Counter(
    "arqfleet_probe_bad_heartbeats",
    "Heartbeat values that could not be read (corrupt, or a newer format).",
    _QUEUE,
    registry=REGISTRY,
)

# -- the scaling loop: per Redis (label redis: a hash of the URL, never the URL) ---------------
PROBE_SECONDS = Histogram(
    "arqfleet_probe_duration_seconds",
    "Time of one probe round (every queue of one Redis, one pipeline).",
    ["redis"],
    # One round trip is well under a millisecond on a LAN; the tail shows a slow Redis.
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
REDIS_UP = Gauge(
    "arqfleet_redis_up",
    "1 if the last probe round of this Redis succeeded, else 0.",
    ["redis"],
    registry=REGISTRY,
)
LOOP_LAG = Histogram(
    "arqfleet_scaling_loop_lag_seconds",
    "How late a queue's probe started against its schedule.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
    registry=REGISTRY,
)
SCALING_ERRORS = Counter(
    "arqfleet_scaling_errors",
    "Polls of a queue that failed after probing (an API error while scaling or reporting).",
    ["error"],
    registry=REGISTRY,
)

_PER_QUEUE: list[MetricWrapperBase] = [
    QUEUE_READY,
    QUEUE_DEFERRED,
    QUEUE_RUNNING,
    QUEUE_OLDEST,
    QUEUE_DEAD_LETTERS,
    REPLICAS_DESIRED,
    REPLICAS_CURRENT,
    REPLICAS_READY,
    REPLICAS_RECOMMENDED,
    REPLICAS_MIN,
    REPLICAS_MAX,
    QUEUE_MAX_WAIT,
    SCALING_LIMITED,
    PROBE_SKIPPED,
    PROBE_BAD_HEARTBEATS,
    REDIS_REACHABLE,
]


def forget_jobqueue(namespace: str, name: str) -> None:
    """Drop a deleted JobQueue's series, so they do not linger as stale values."""
    for metric in _PER_QUEUE:
        with contextlib.suppress(KeyError):
            metric.remove(namespace, name)
    names = ("namespace", "jobqueue", "direction", "reason")
    series = {
        tuple(sample.labels[n] for n in names)
        for family in SCALE_EVENTS.collect()
        for sample in family.samples
    }
    for labels in series:
        if labels[:2] == (namespace, name):
            with contextlib.suppress(KeyError):
                SCALE_EVENTS.remove(*labels)
