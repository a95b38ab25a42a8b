"""Wrap each job function of the user's settings to count, time and classify its tries.

The wrapper runs inside arq's job task, around the user's coroutine, and decides the outcome of
the try (success, failure, retry, timeout, cancelled) and whether the job is now dead. It sees
the same `ctx` dict arq passes to the function and the hooks, and re-raises everything
unchanged, so arq's own handling (retries, results, hooks) is exactly what it would be without
arqfleet. It must not touch Redis on the job's path: dead letters are handed to the recorder,
which writes in the background. Its own bookkeeping must never raise into arq: a failure there
is logged and the job's result or exception passes through untouched.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from arq.cron import CronJob
from arq.worker import Function, Retry, RetryJob

from arqfleet.worker import constants as c
from arqfleet.worker.dead_letters import DeadLetterRecorder
from arqfleet.worker.metrics import WorkerMetrics

F = TypeVar("F", Function, CronJob)

logger = logging.getLogger("arqfleet.worker")


class WorkerView(Protocol):
    """What the wrapper reads from the running arq Worker to classify a cancellation."""

    retry_jobs: bool
    max_tries: int
    aborting_tasks: set[str]

    @property
    def stopping(self) -> bool: ...


@dataclass
class JobCounts:
    """Plain counters read by the heartbeat and the in-progress gauge (no locking: one loop)."""

    in_flight: int = 0
    started: int = 0
    completed: int = 0


def classify(
    exc: BaseException,
    *,
    retry_jobs: bool,
    aborting: bool,
    stopping: bool,
    job_try: int,
    max_tries: int,
) -> tuple[str, bool]:
    """(outcome, dead) of a try that raised `exc`, mirroring arq 0.28's `Worker.run_job`.

    * Retry (and arq's RetryJob) re-queue the job; on the last try arq will give up at the next
      pick, so the job is dead now and this is the last moment its real error is known.
    * CancelledError is an abort, a drain-deadline cut (`stopping`), or else arq's
      `wait_for(..., timeout)` cancelling the job: a timeout, which arq does not retry.
      A cut is retried by arq only when retry_jobs is on.
    * Anything else is a failure arq does not retry.
    """
    if retry_jobs and isinstance(exc, Retry | RetryJob):
        return c.OUTCOME_RETRY, job_try >= max_tries
    if isinstance(exc, asyncio.CancelledError):
        if aborting:
            return c.OUTCOME_CANCELLED, False
        if stopping:
            return c.OUTCOME_CANCELLED, not retry_jobs
        return c.OUTCOME_TIMEOUT, True
    return c.OUTCOME_FAILURE, True


class Instrument:
    """Holds what every wrapper shares; `bind()` to the worker once it exists."""

    def __init__(
        self, metrics: WorkerMetrics, recorder: DeadLetterRecorder | None, counts: JobCounts
    ) -> None:
        self.metrics = metrics
        self.recorder = recorder
        self.counts = counts
        self.worker: WorkerView | None = None

    def bind(self, worker: WorkerView) -> None:
        self.worker = worker

    def wrap(self, function: F) -> F:
        """A copy of `function` whose coroutine is instrumented (name, timeout, tries kept)."""
        wrapped = self._wrap_coroutine(function.name, function.coroutine, function.max_tries)
        return dataclasses.replace(function, coroutine=wrapped)

    def _wrap_coroutine(
        self, name: str, coroutine: Callable[..., Any], own_max_tries: int | None
    ) -> Callable[..., Any]:
        fm = self.metrics.for_function(name)
        counts = self.counts
        success = fm.finished[c.OUTCOME_SUCCESS]

        def started(ctx: dict[str, Any]) -> None:
            score = ctx.get("score")
            if score:
                fm.queue_wait.observe(max(0.0, time.time() - score / 1000))
            fm.started.inc()

        @functools.wraps(coroutine)
        async def instrumented(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            counts.in_flight += 1
            counts.started += 1
            _safely(name, started, ctx)
            began = time.perf_counter()
            try:
                result = await coroutine(ctx, *args, **kwargs)
            except BaseException as exc:
                _safely(name, fm.duration.observe, time.perf_counter() - began)
                _safely(name, self._failed, exc, name, own_max_tries, ctx, args, kwargs)
                raise
            else:
                _safely(name, fm.duration.observe, time.perf_counter() - began)
                _safely(name, success.inc)
                return result
            finally:
                counts.in_flight -= 1
                counts.completed += 1

        return instrumented

    def _failed(
        self,
        exc: BaseException,
        name: str,
        own_max_tries: int | None,
        ctx: dict[str, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        worker = self.worker
        if worker is None:  # pragma: no cover - bound before the first poll
            raise RuntimeError("instrument used before bind()")
        job_id = str(ctx.get("job_id", ""))
        job_try = int(ctx.get("job_try", 1))
        max_tries = worker.max_tries if own_max_tries is None else own_max_tries
        outcome, dead = classify(
            exc,
            retry_jobs=worker.retry_jobs,
            aborting=job_id in worker.aborting_tasks,
            stopping=worker.stopping,
            job_try=job_try,
            max_tries=max_tries,
        )
        self.metrics.for_function(name).finished[outcome].inc()
        if dead and self.recorder is not None:
            if outcome == c.OUTCOME_TIMEOUT:
                exc = TimeoutError(f"job exceeded its timeout (try {job_try})")
            enqueue_time = ctx.get("enqueue_time")
            enqueued_ms = int(enqueue_time.timestamp() * 1000) if enqueue_time is not None else 0
            self.recorder.record_soon(
                job_id=job_id,
                function=name,
                args=args,
                kwargs=kwargs,
                tries=job_try,
                enqueued_at_ms=enqueued_ms,
                failed_at_ms=int(time.time() * 1000),
                error=exc,
            )


def _safely(function: str, bookkeeping: Callable[..., object], *args: Any) -> None:
    """Run one piece of our bookkeeping around a job; a bug in it is logged, never raised.

    Raised inside the job's task it would replace the job's own result or exception in arq.
    """
    try:
        bookkeeping(*args)
    except Exception:
        logger.exception("arqfleet bookkeeping failed around a job of %s", function)
