"""Run the user's arq settings in an arq Worker that drains, reports and survives Redis outages.

Decides the drain (arq's job_completion_wait, with readiness false at once, and every job cut
at the deadline logged by id) and the order of start-up and shutdown: probes first, then Redis,
then the Worker with instrumented functions and the heartbeat; at exit, cut jobs' re-queue
writes, heartbeat removal, pending dead letters, then arq's close. Which settings the Worker gets
is `overrides`' decision. It must not
reimplement arq's job execution: `FleetWorker` only hooks the signal handlers, the poll iteration
(to survive Redis outages) and failed-job bookkeeping (dead letters).

Overridden arq internals (pinned by arq>=0.28,<0.29): `_poll_iteration` and `start_jobs`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime, tzinfo
from signal import Signals
from typing import Any

from arq.connections import ArqRedis, create_pool
from arq.constants import default_queue_name
from arq.cron import CronJob
from arq.jobs import deserialize_result
from arq.worker import Worker, func
from prometheus_client import disable_created_metrics
from redis.exceptions import RedisError

from arqfleet.worker.cron_schedule import next_tick_ms
from arqfleet.worker.dead_letters import DeadLetterPolicy, DeadLetterRecorder, DeadLetterStore
from arqfleet.worker.health import Health
from arqfleet.worker.heartbeat import Heartbeat
from arqfleet.worker.instrument import Instrument, JobCounts
from arqfleet.worker.metrics import WorkerMetrics
from arqfleet.worker.overrides import effective_redis_settings, worker_kwargs
from arqfleet.worker.server import ProbeServer
from arqfleet.worker.settings import WorkerEnv, mask_url

logger = logging.getLogger("arqfleet.worker")

REDIS_ERRORS = (RedisError, OSError, TimeoutError)


class FleetWorker(Worker):
    """arq's Worker plus: drain state, per-job cut logging, outage survival, dead letters."""

    def __init__(
        self,
        *args: Any,
        health: Health,
        recorder: DeadLetterRecorder | None,
        on_drain: Callable[[], None],
        **kwargs: Any,
    ) -> None:
        self.health = health
        self.recorder = recorder
        self._on_drain = on_drain
        super().__init__(*args, **kwargs)
        self.on_stop = self._stopped

    @property
    def stopping(self) -> bool:
        """True once running jobs are being cancelled (drain deadline or immediate stop)."""
        return self.health.stopping

    def _begin_drain(self, signum: Signals) -> None:
        if self.health.draining:
            return
        self.health.draining = True
        logger.info(
            "%s: draining: not ready, taking no new jobs, %d running, waiting up to %ss",
            Signals(signum).name,
            len(self.tasks),
            self._job_completion_wait,
        )
        self._on_drain()

    def handle_sig_wait_for_completion(self, signum: Signals) -> None:
        if self.health.draining:
            if Signals(signum) == Signals.SIGINT:
                # Ctrl-C twice means "now": cut the running jobs, arq re-queues them.
                self.handle_sig(signum)
            # A repeated SIGTERM (e.g. forwarded by a wrapper too) must not shorten the drain.
            return
        self._begin_drain(signum)
        super().handle_sig_wait_for_completion(signum)

    def handle_sig(self, signum: Signals) -> None:
        self._begin_drain(signum)
        super().handle_sig(signum)

    def _stopped(self, signum: Signals) -> None:
        # arq calls on_stop right after cancelling the running jobs, in the same step, so every
        # job's wrapper sees `stopping` when its CancelledError arrives.
        self.health.stopping = True
        for job_id, task in self.tasks.items():
            if not task.done():
                logger.warning("job %s cut by the drain deadline: cancelled, re-queued", job_id)

    async def _poll_iteration(self) -> None:
        queries_redis = self.allow_pick_jobs and self.job_counter < self.max_jobs
        try:
            await super()._poll_iteration()
        except REDIS_ERRORS as exc:
            # arq would let this end the worker; a Redis outage should make the pod unready,
            # not restart it. The next poll tries again.
            self.health.redis_failed("poll", exc)
            return
        if queries_redis:
            self.health.redis_ok()

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        try:
            await super().start_jobs(job_ids)
        except REDIS_ERRORS:
            # arq took a slot (job_counter + semaphore) for the job whose in-progress check just
            # failed and never gives it back: without this, each outage shrinks max_jobs by one.
            self._release_sem_dec_counter_on_complete()
            raise

    async def finish_failed_job(self, job_id: str, result_data: bytes | None) -> None:
        await super().finish_failed_job(job_id, result_data)
        if self.recorder is None or result_data is None:
            return
        try:
            result = deserialize_result(result_data, deserializer=self.job_deserializer)
        except Exception:
            logger.exception("cannot read the failure of job %s for the dead-letter store", job_id)
            return
        if isinstance(result.result, asyncio.CancelledError):
            return  # aborted on request: not a dead letter
        # Max tries exceeded, expired, unknown function: arq gives up without running the job.
        # The job's last real error may already be recorded by its final try: keep that one.
        self.recorder.record_soon(
            job_id=job_id,
            function=result.function,
            args=result.args,
            kwargs=result.kwargs,
            tries=max(0, result.job_try - 1),
            enqueued_at_ms=int(result.enqueue_time.timestamp() * 1000),
            failed_at_ms=int(time.time() * 1000),
            error=result.result,
            only_if_absent=True,
        )


async def _connect(kwargs: dict[str, Any], env: WorkerEnv, queue_name: str) -> ArqRedis:
    user_pool = kwargs.pop("redis_pool", None)
    redis_settings = effective_redis_settings(kwargs, env)
    kwargs.pop("redis_settings", None)
    if user_pool is not None and env.redis_url is None:
        return user_pool  # type: ignore[no-any-return]
    if env.redis_url is not None:
        logger.info("redis from ARQFLEET_REDIS_URL: %s", mask_url(env.redis_url))
    return await create_pool(
        redis_settings,
        job_serializer=kwargs.get("job_serializer"),
        job_deserializer=kwargs.get("job_deserializer"),
        default_queue_name=queue_name,
        expires_extra_ms=kwargs.get("expires_extra_ms", 86_400_000),
    )


def _instrument_functions(kwargs: dict[str, Any], instrument: Instrument) -> None:
    kwargs["functions"] = [instrument.wrap(func(f)) for f in kwargs.get("functions") or ()]
    crons: list[CronJob] = list(kwargs.get("cron_jobs") or ())
    kwargs["cron_jobs"] = [instrument.wrap(cj) for cj in crons]


async def run(settings: type | dict[str, Any], env: WorkerEnv) -> int:
    """Run until drained after a signal; the process exit code."""
    # One process, one registry: `_created` series only double what Prometheus stores.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    kwargs = worker_kwargs(settings, env)
    queue_name: str = kwargs.get("queue_name") or default_queue_name
    kwargs["queue_name"] = queue_name
    counts = JobCounts()
    health = Health(redis_stale_seconds=env.redis_stale_seconds)
    names = [func(f).name for f in kwargs.get("functions") or ()]
    names += [cj.name for cj in kwargs.get("cron_jobs") or ()]
    metrics = WorkerMetrics(
        names, in_progress=lambda: counts.in_flight, draining=lambda: float(health.draining)
    )
    health.redis_errors = metrics.redis_errors
    server = ProbeServer(health, metrics, env.http_port)
    await server.start()
    logger.info("pod %s: probes and metrics on :%d", env.pod_name, env.http_port)
    try:
        pool = await _connect(kwargs, env, queue_name)
    except REDIS_ERRORS as exc:
        logger.error("cannot connect to redis: %s: %s", type(exc).__name__, exc)
        await server.stop()
        return 1
    health.redis_ok()
    try:
        return await _run_worker(kwargs, env, pool, health, metrics, counts)
    finally:
        await server.stop()


def _now_in(zone: tzinfo | None) -> datetime:
    """Now in `zone`, or in the system's zone when None (arq's default for `timezone`)."""
    return datetime.now(tz=zone) if zone is not None else datetime.now().astimezone()


async def _run_worker(
    kwargs: dict[str, Any],
    env: WorkerEnv,
    pool: ArqRedis,
    health: Health,
    metrics: WorkerMetrics,
    counts: JobCounts,
) -> int:
    queue_name: str = kwargs["queue_name"]
    policy = DeadLetterPolicy(
        max_entries=env.dlq_max_entries,
        retention_seconds=env.dlq_retention_seconds,
        args_repr_chars=env.dlq_args_repr_chars,
        payload_max_bytes=env.dlq_payload_max_bytes,
    )

    def dead_letter_written(function: str, error: BaseException | None) -> None:
        if error is None:
            metrics.for_function(function).dead_letters.inc()
        else:
            health.redis_failed("dead_letter", error)

    recorder = DeadLetterRecorder(
        DeadLetterStore(pool, queue_name),
        policy,
        pod=env.pod_name,
        serializer=kwargs.get("job_serializer"),
        on_result=dead_letter_written,
    )
    instrument = Instrument(metrics, recorder, counts)
    _instrument_functions(kwargs, instrument)
    worker: FleetWorker | None = None

    def cron_next() -> int | None:
        # Evaluated at each beat, so the published tick moves on right after a tick fires; the
        # operator wakes a worker before it when the fleet is at zero. In the Worker's timezone
        # (arq's default is the system's), never converted: hour and weekday match in that zone.
        if worker is None:  # beats start after the Worker exists; this only satisfies typing
            return next_tick_ms(kwargs.get("cron_jobs") or (), _now_in(kwargs.get("timezone")))
        return next_tick_ms(worker.cron_jobs, _now_in(worker.timezone))

    heartbeat = Heartbeat(
        pool,
        queue_name=queue_name,
        pod=env.pod_name,
        interval=env.heartbeat_seconds,
        max_jobs=kwargs.get("max_jobs", 10),
        health=health,
        snapshot=lambda: (counts.in_flight, counts.completed),
        cron_next=cron_next,
    )
    worker = FleetWorker(
        redis_pool=pool, health=health, recorder=recorder, on_drain=heartbeat.wake, **kwargs
    )
    instrument.bind(worker)
    heartbeat.start()
    worker.main_task = asyncio.get_running_loop().create_task(worker.main())
    await asyncio.wait({worker.main_task})
    code = 0
    if not worker.main_task.cancelled() and worker.main_task.exception() is not None:
        exc = worker.main_task.exception()
        logger.error("worker stopped: %s: %s", type(exc).__name__, exc, exc_info=exc)
        code = 1
    # Cut jobs are still writing their re-queue (finish_job) under asyncio.shield: wait for it.
    await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    worker.tasks.clear()
    await heartbeat.stop(remove=code == 0)
    await recorder.flush()
    try:
        await worker.close()
    except REDIS_ERRORS as exc:
        logger.warning("redis error while closing: %s", exc)
    logger.info(
        "pod %s stopped: %d tries started, %d finished",
        env.pod_name,
        counts.started,
        counts.completed,
    )
    return code
