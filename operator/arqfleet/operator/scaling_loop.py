"""The one scaling loop: every due JobQueue probed, decided and written, per Redis in rounds.

One asyncio task for the whole operator, over kopf's index of JobQueues (no kopf timers or
daemons: those put a finalizer on every JobQueue and run a task per object). Each queue is due
every `spec.scaling.pollSeconds`, starting at a random phase so that many queues with the same
period spread over it instead of arriving together. Due queues are grouped by Redis; each
group is one probe round (one pipeline) in a task of its own, so a slow or dead Redis delays
only its own queues, and a Redis whose round is still running is not probed again meanwhile.
A failure of one queue's poll is logged and counted; the loop and the other queues go on.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from arqfleet.operator import metrics
from arqfleet.operator.history import quantum
from arqfleet.operator.kube import is_gone
from arqfleet.operator.queue_probe import ProbeError, ProbeRequest, ProbeResult, probe, window_for
from arqfleet.operator.reconcile import JobQueueSnapshot, SpecError, parse_spec
from arqfleet.operator.redis_pools import RedisPools, describe, pool_id
from arqfleet.operator.scaler import Scaler
from arqfleet.operator.state import Fleet, QueueState

log = logging.getLogger(__name__)

# How soon a queue whose spec stopped parsing is looked at again.
FALLBACK_POLL_SECONDS = 30.0
# Longest sleep between looks at the schedule: bounds how late a newly created JobQueue is
# first seen (its own phase comes on top).
MAX_IDLE_SECONDS = 0.25
# Queues due within this much of a tick join its round, up to this early. Without it, 1,000
# queues on random phases made a tick per due time, ~170 ticks/s each walking every queue:
# 0.6 core at 1,000 JobQueues (bench/operator_scale.py). With it, ticks come at most about
# 1 / BATCH_SECONDS a second and rounds carry several queues each.
BATCH_SECONDS = 0.1

# kopf's index of JobQueues: (namespace, name) -> the snapshots stored under that key.
JobQueueIndex = Mapping[tuple[str, str], Iterable[JobQueueSnapshot]]


@dataclass
class ScalingLoop:
    index: JobQueueIndex
    fleet: Fleet
    pools: RedisPools
    scaler: Scaler
    probe_timeout_seconds: float = 3.0
    resync: Callable[[JobQueueSnapshot], Coroutine[Any, Any, None]] | None = None
    """Reconcile a queue whose event-driven reconcile failed (`QueueState.resync_at`)."""
    _rounds: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _resyncs: dict[tuple[str, str], asyncio.Task[None]] = field(default_factory=dict)

    async def run(self) -> None:
        while True:
            try:
                wait = self.tick(time.monotonic())
            except Exception:  # one bad object must not stop scaling for everyone
                log.exception("scaling loop: tick failed")
                wait = MAX_IDLE_SECONDS
            await asyncio.sleep(wait)

    @property
    def rounds_running(self) -> int:
        return len(self._rounds)

    async def stop(self) -> None:
        tasks = [*self._rounds.values(), *self._resyncs.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def tick(self, now: float) -> float:
        """Start a probe round for every Redis with due queues; seconds until the next look."""
        due: dict[str, list[tuple[JobQueueSnapshot, QueueState]]] = defaultdict(list)
        earliest = now + MAX_IDLE_SECONDS
        horizon = now + BATCH_SECONDS
        for jq in self._jobqueues():
            state = self.fleet[jq.key]
            self._maybe_resync(jq, state, now)
            scaling = state.scaling
            poll = _poll_seconds(jq)
            if poll is None:
                continue  # a spec the models refuse: the reconciler reports it
            if scaling.next_due is None:
                # A random phase, so queues with the same period spread over it. Not crypto.
                scaling.next_due = now + random.uniform(0, poll)
            url = state.redis_url
            if scaling.next_due > horizon or url is None:
                earliest = min(earliest, scaling.next_due) if url is not None else earliest
                continue
            if pool_id(url) in self._rounds:
                continue  # its Redis is still answering the last round
            due[url].append((jq, state))
        for url, queues in due.items():
            key = pool_id(url)
            task = asyncio.get_running_loop().create_task(
                self._round(url, queues, now), name=f"arqfleet-probe-{key}"
            )
            self._rounds[key] = task
            task.add_done_callback(lambda _, key=key: self._rounds.pop(key, None))  # type: ignore[misc]
        return max(0.0, min(earliest - now, MAX_IDLE_SECONDS))

    def _maybe_resync(self, jq: JobQueueSnapshot, state: QueueState, now: float) -> None:
        due = state.resync_at
        if self.resync is None or due is None or due > now or jq.key in self._resyncs:
            return
        task = asyncio.get_running_loop().create_task(self.resync(jq), name="arqfleet-resync")
        self._resyncs[jq.key] = task
        task.add_done_callback(lambda _, key=jq.key: self._resyncs.pop(key, None))  # type: ignore[misc]

    def _jobqueues(self) -> list[JobQueueSnapshot]:
        found = []
        for snapshots in list(self.index.values()):
            for jq in snapshots:
                if not jq.deleting:
                    found.append(jq)
        return found

    async def _round(
        self, url: str, queues: list[tuple[JobQueueSnapshot, QueueState]], started: float
    ) -> None:
        try:
            await self._probe_and_poll(url, queues, started)
        except Exception as error:  # the next round must come whatever failed in this one
            metrics.SCALING_ERRORS.labels(type(error).__name__).inc()
            log.exception("scaling loop: probe round failed")
        finally:
            now = time.monotonic()
            for jq, state in queues:
                _reschedule(state, _poll_seconds(jq) or FALLBACK_POLL_SECONDS, now)

    async def _probe_and_poll(
        self, url: str, queues: list[tuple[JobQueueSnapshot, QueueState]], started: float
    ) -> None:
        key = pool_id(url)
        requests = []
        for jq, state in queues:
            assert state.scaling.next_due is not None
            metrics.LOOP_LAG.observe(max(0.0, started - state.scaling.next_due))
            requests.append(_request(jq))
        began = time.monotonic()
        results = await probe(self.pools.client(url), requests, timeout=self.probe_timeout_seconds)
        metrics.PROBE_SECONDS.labels(key).observe(time.monotonic() - began)
        metrics.REDIS_UP.labels(key).set(int(not all(isinstance(r, ProbeError) for r in results)))
        where = describe(url)
        await asyncio.gather(
            *(
                self._poll(jq, state, result, where)
                for (jq, state), result in zip(queues, results, strict=True)
            )
        )

    async def _poll(
        self,
        jq: JobQueueSnapshot,
        state: QueueState,
        result: ProbeResult | ProbeError,
        where: str,
    ) -> None:
        # The freshest snapshot kopf has: the one in the round may be a poll old.
        latest = _latest(self.index, jq)
        if latest is None or latest.deleting or self.fleet.get(jq.key) is not state:
            return  # deleted while its probe ran: nothing to scale or report
        try:
            await self.scaler.poll(latest, state, result, where)
        except SpecError:
            return  # reported by the reconciler as InvalidSpec
        except ApiException as error:
            if is_gone(error):
                return  # the JobQueue or its namespace went away meanwhile
            metrics.SCALING_ERRORS.labels(type(error).__name__).inc()
            log.warning("%s/%s: scaling poll failed: %s", jq.namespace, jq.name, error.reason)
        except Exception as error:
            metrics.SCALING_ERRORS.labels(type(error).__name__).inc()
            log.exception("%s/%s: scaling poll failed", jq.namespace, jq.name)


def _reschedule(state: QueueState, poll: float, now: float) -> None:
    """Next due one period after the last, keeping the queue's phase; a queue that fell more
    than a period behind starts afresh from now instead of catching up in a burst."""
    scaling = state.scaling
    following = (scaling.next_due or now) + poll
    scaling.next_due = following if following > now else now + poll


def _poll_seconds(jq: JobQueueSnapshot) -> float | None:
    """The queue's poll period, or None when its spec cannot be read."""
    try:
        return float(parse_spec(jq).scaling.poll_seconds)
    except SpecError:
        return None


def _request(jq: JobQueueSnapshot) -> ProbeRequest:
    spec = parse_spec(jq)
    down = spec.scaling.scale_down.stabilization_seconds
    return ProbeRequest(
        queue_name=spec.queue_name,
        window=window_for(spec.scaling.max_replicas, spec.worker.max_jobs),
        # Deferred jobs due within the scale-down window (or the next poll) keep a worker
        # (decision.recommend); the quantum covers the window's rounding.
        due_soon_seconds=max(down + quantum(down), spec.scaling.poll_seconds),
    )


def _latest(index: JobQueueIndex, jq: JobQueueSnapshot) -> JobQueueSnapshot | None:
    for found in index.get(jq.key, ()):
        return found
    return None
