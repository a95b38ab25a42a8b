"""Prometheus metrics of one worker process, in a registry of its own.

Decides the metric families, their labels and buckets. Labels are the job function's name and
the outcome, never job arguments or ids (unbounded cardinality, possibly personal data). It must
not do I/O: the HTTP server renders `WorkerMetrics.render()`; the job instrumentation updates the
per-function children, which are resolved once at start-up so the per-job cost is a few
attribute lookups and no label hashing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from arqfleet.worker import constants as c

# arq jobs range from milliseconds to the 300 s default timeout and beyond: Prometheus'
# default buckets stop at 10 s, which would put every long job in +Inf.
DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    600.0, 1800.0, 3600.0,
)  # fmt: skip
# Queue wait spans the same range: a backlog is exactly what the autoscaler reacts to.
QUEUE_WAIT_BUCKETS = DURATION_BUCKETS

CONTENT_TYPE = CONTENT_TYPE_LATEST

REDIS_OPERATIONS = ("poll", "heartbeat", "dead_letter")


@dataclass(frozen=True)
class FunctionMetrics:
    """The pre-resolved metric children of one job function."""

    started: Counter
    finished: dict[str, Counter]
    duration: Histogram
    queue_wait: Histogram
    dead_letters: Counter


class WorkerMetrics:
    """All arqfleet_worker_* metrics of this process, with their own `CollectorRegistry`."""

    def __init__(
        self,
        function_names: Iterable[str],
        *,
        in_progress: Callable[[], float],
        draining: Callable[[], float],
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._started = Counter(
            c.METRIC_JOBS_STARTED, "Job executions (tries) started.", ["function"], registry=r
        )
        self._finished = Counter(
            c.METRIC_JOBS_FINISHED,
            "Job executions (tries) finished, by outcome: success, failure, retry, timeout, "
            "cancelled (drain deadline or abort).",
            ["function", "outcome"],
            registry=r,
        )
        self._duration = Histogram(
            c.METRIC_JOB_DURATION,
            "Run time of one try of a job function, seconds.",
            ["function"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self._queue_wait = Histogram(
            c.METRIC_QUEUE_WAIT,
            "Time from when a job became runnable (its queue score) to its start, seconds.",
            ["function"],
            buckets=QUEUE_WAIT_BUCKETS,
            registry=r,
        )
        self._dead_letters = Counter(
            c.METRIC_DEAD_LETTERS,
            "Jobs that failed for good and were recorded as dead letters.",
            ["function"],
            registry=r,
        )
        gauge = Gauge(c.METRIC_IN_PROGRESS, "Jobs running in this worker now.", registry=r)
        gauge.set_function(in_progress)
        drain_gauge = Gauge(
            c.METRIC_DRAINING, "1 while the worker drains after a signal.", registry=r
        )
        drain_gauge.set_function(draining)
        self._redis_errors = Counter(
            c.METRIC_REDIS_ERRORS,
            "Redis commands of the runtime that failed, by operation.",
            ["operation"],
            registry=r,
        )
        # Export zeros from the start: rate() and absent() need the series before the first error.
        self.redis_errors = {op: self._redis_errors.labels(op) for op in REDIS_OPERATIONS}
        self._functions: dict[str, FunctionMetrics] = {}
        for name in function_names:
            self.for_function(name)

    def for_function(self, name: str) -> FunctionMetrics:
        """The children of `name`, created on first use (all functions are known at start-up)."""
        found = self._functions.get(name)
        if found is None:
            found = FunctionMetrics(
                started=self._started.labels(name),
                finished={o: self._finished.labels(name, o) for o in c.OUTCOMES},
                duration=self._duration.labels(name),
                queue_wait=self._queue_wait.labels(name),
                dead_letters=self._dead_letters.labels(name),
            )
            self._functions[name] = found
        return found

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
