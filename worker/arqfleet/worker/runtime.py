"""Run the user's arq settings in an arq Worker that drains, reports and survives Redis outages.

Decides the drain (arq's job_completion_wait, with readiness false at once, and every job cut
at the deadline or by an immediate stop logged by id with what arq does with it) and the order
of start-up and shutdown: probes first, then Redis, then the Worker with instrumented functions
and the heartbeat; at exit, cut jobs' last writes, heartbeat removal, pending dead letters, then
arq's close, all within one shutdown deadline (`shutdown`). Which settings the Worker gets is
`overrides`' decision. It must not reimplement arq's job execution: `FleetWorker` only hooks the
signal handlers, the poll iteration (to survive Redis outages) and failed-job bookkeeping (dead
letters), and nothing of ours may raise into arq's job bookkeeping.

Overridden arq internals (pinned by arq>=0.28,<0.29): `_poll_iteration` and `start_jobs`, which
also decide when in the poll period a pod fetches and which fetched ids arq tries
(`pickup`: N pods of one queue add throughput instead of racing for the same ids).
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
from arqfleet.worker.pickup import Pickup, fetch_phase
from arqfleet.worker.server import ProbeServer
from arqfleet.worker.settings import WorkerEnv, mask_url
from arqfleet.worker.shutdown import Shutdown

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
        # What cancels the running jobs, for the log: the drain deadline unless stopped at once.
        self._cut_by = "the drain deadline"
        self._pickup: Pickup | None = None
        super().__init__(*args, **kwargs)
        self.on_stop = self._stopped
        # A burst worker drains a backlog alone (the runtime never runs one): no offset for it.
        self.fetch_phase = 0.0 if self.burst else fetch_phase(self.poll_delay_s)

    @property
    def stopping(self) -> bool:
        """True once running jobs are being cancelled (drain deadline or immediate stop)."""
        return self.health.stopping

    def _not_ready(self) -> None:
        """Readiness false, and the heartbeat reports it at once (not a period later)."""
        if not self.health.draining:
            self.health.draining = True
            self._on_drain()

    def handle_sig_wait_for_completion(self, signum: Signals) -> None:
        sig = Signals(signum)
        if self.health.draining:
            if sig == Signals.SIGINT:
                # Ctrl-C twice means "now".
                self._stop_now(sig, "SIGINT again: stopping now", "a second SIGINT")
            # A repeated SIGTERM (e.g. forwarded by a wrapper too) must not shorten the drain.
            return
        self._not_ready()
        logger.info(
            "%s: draining: not ready, taking no new jobs, %d running, waiting up to %ss",
            sig.name,
            len(self.tasks),
            self._job_completion_wait,
        )
        super().handle_sig_wait_for_completion(signum)

    def handle_sig(self, signum: Signals) -> None:
        # arq installs this handler instead of the draining one when the drain time is 0 (its
        # close() also calls it, but only when arq does not own the signals).
        sig = Signals(signum)
        why = " (drain time is 0)" if not self._job_completion_wait else ""
        self._stop_now(sig, f"{sig.name}: stopping now{why}", "an immediate stop")

    def _stop_now(self, sig: Signals, heading: str, cut_by: str) -> None:
        self._cut_by = cut_by
        self._not_ready()
        logger.info(
            "%s: not ready, taking no new jobs, cancelling %d running job(s)",
            heading,
            sum(not task.done() for task in self.tasks.values()),
        )
        super().handle_sig(sig)

    def _stopped(self, signum: Signals) -> None:
        # arq calls on_stop right after cancelling the running jobs, in the same step, so every
        # job's wrapper sees `stopping` when its CancelledError arrives.
        self.health.stopping = True
        # What arq 0.28's run_job does with a cancelled job: with retry_jobs it leaves the job in
        # the queue (only its in-progress key is deleted) to be picked again; without, it stores
        # the CancelledError as the job's failed result and removes it from the queue.
        if self.retry_jobs:
            fate = "re-queued by arq (it stays in the queue and is picked again)"
        else:
            fate = "not re-queued: retry_jobs is off, so arq finishes it as failed"
        for job_id, task in self.tasks.items():
            if not task.done():
                logger.warning("job %s cut by %s: cancelled, %s", job_id, self._cut_by, fate)

    async def _poll_iteration(self) -> None:
        if self.fetch_phase and self.allow_pick_jobs:
            # This pod's own moment in the period, not the fleet's (pickup.py: why). Every
            # iteration, not only those that will fetch: arq decides whether to fetch from the
            # free slots, and deciding that at the fleet's moment would miss slots that free up
            # just before ours, a period lost per job cycle.
            await asyncio.sleep(self.fetch_phase)
        queries_redis = self._will_fetch()
        try:
            await super()._poll_iteration()
        except REDIS_ERRORS as exc:
            # arq would let this end the worker; a Redis outage should make the pod unready,
            # not restart it. The next poll tries again.
            self.health.redis_failed("poll", exc)
            return
        if queries_redis:
            self.health.redis_ok()

    def _will_fetch(self) -> bool:
        """Whether arq's poll iteration reads the queue now (it does not when full or draining)."""
        return self.allow_pick_jobs and self.job_counter < self.max_jobs

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        if self._pickup is None:
            self._pickup = Pickup(self.pool)  # the pool may be created by main()
        # Skip what is running already before arq tries each id (pickup.py: why). Our own
        # running jobs need no Redis to tell (a finished task may be a retry due again).
        running = {job_id.encode() for job_id, task in self.tasks.items() if not task.done()}
        job_ids = [job_id for job_id in job_ids if job_id not in running]
        job_ids = await self._pickup.not_in_progress(job_ids, self.max_jobs - self.job_counter)
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
            self._record_failed(self.recorder, job_id, result_data)
        except Exception:
            # arq awaits this inside run_job, and an exception from a job task ends Worker.main()
            # at the next poll: plain arq would keep running, so must we.
            logger.exception("cannot record the failure of job %s as a dead letter", job_id)

    def _record_failed(self, recorder: DeadLetterRecorder, job_id: str, data: bytes) -> None:
        result = deserialize_result(data, deserializer=self.job_deserializer)
        if isinstance(result.result, asyncio.CancelledError):
            return  # aborted on request: not a dead letter
        # Max tries exceeded, expired, unknown function: arq gives up without running the job.
        # The job's last real error may already be recorded by its final try: keep that one.
        # A serializer that cannot encode exceptions (msgpack) leaves arq's placeholder string as
        # `result.result`; the recorder describes it as such.
        recorder.record_soon(
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
    abandoned = await _shut_down(
        worker, heartbeat, recorder, pool, budget=env.shutdown_seconds, crashed=code != 0
    )
    summary = (
        f"pod {env.pod_name} stopped: {counts.started} tries started, {counts.completed} finished"
    )
    if abandoned:
        logger.error(
            "%s; exit code 1: shutdown incomplete, gave up on: %s",
            summary,
            ", ".join(abandoned),
        )
        return 1
    logger.info("%s", summary)
    return code


async def _shut_down(
    worker: FleetWorker,
    heartbeat: Heartbeat,
    recorder: DeadLetterRecorder,
    pool: ArqRedis,
    *,
    budget: float,
    crashed: bool,
) -> list[str]:
    """The last writes, in order, within `budget` seconds; the names of those abandoned."""
    shutdown = Shutdown(budget)
    if worker.tasks:
        # Cut jobs are still writing their outcome (finish_job) under asyncio.shield.
        await shutdown.step(
            "cut jobs' last writes",
            asyncio.gather(*worker.tasks.values(), return_exceptions=True),
            "their in-progress keys expire after the job timeout + 10 s, then they run again",
        )
    worker.tasks.clear()
    await heartbeat.stop(remove=False)
    if not crashed:  # a crashed worker's beat stays until its TTL: the operator sees it die
        await shutdown.step("heartbeat removal", heartbeat.remove(), "the beat expires by its TTL")
    if recorder.pending:
        await shutdown.step(
            "dead letters", recorder.flush(), f"{recorder.pending} dead letter(s) not recorded"
        )
    closed = await shutdown.step(
        "arq's close",
        worker.close(),
        "arq's health-check key stays until it expires; the settings' on_shutdown did not finish",
    )
    if not closed:
        closing = asyncio.ensure_future(pool.aclose(close_connection_pool=True))
        # Closing sockets needs no answer from Redis; bounded all the same, since exiting closes
        # them anyway.
        await asyncio.wait({closing}, timeout=1.0)
    return shutdown.abandoned
