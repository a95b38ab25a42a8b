"""One queue, one poll: from a probe result to the replicas, pod costs, status and Events.

Observe (the probe result the loop hands in, the Deployment and pods the watches keep in
`QueueState`), plan (`decision.decide`, `pod_ranking`, `status.scaler_status`: pure), act: the
status through server-side apply only when it changes (first: it records the step about to be
taken), then the pod-deletion-cost annotations just before a scale-down, then the scale
subresource (field manager `arqfleet-scaler`) only when the replicas change, with an Event per
scale and per Redis transition. The scaler never writes anything
the reconciler owns, and it holds the queue's lock while it writes, so the two take turns.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from arqfleet.operator import constants as c
from arqfleet.operator import history as hi
from arqfleet.operator import metrics, pod_ranking
from arqfleet.operator import status as st
from arqfleet.operator.conditions import Condition, ConditionType, Reason, timestamp
from arqfleet.operator.decision import Decision, QueueStats, decide
from arqfleet.operator.kube import DEPLOYMENTS, JOBQUEUES, PODS, KubeClient, retry_conflicts
from arqfleet.operator.models import JobQueueSpec
from arqfleet.operator.queue_probe import ProbeError, ProbeResult
from arqfleet.operator.reconcile import (
    Clock,
    JobQueueSnapshot,
    parse_spec,
    scale_body,
    status_body,
)
from arqfleet.operator.state import QueueState, ScalingState

log = logging.getLogger(__name__)

# (object the Event is about, type "Normal"/"Warning", reason, message); must not raise.
AsyncEventSink = Callable[[Mapping[str, Any], str, str, str], Awaitable[None]]


def jobs_per_replica(spec: JobQueueSpec) -> int:
    return spec.scaling.jobs_per_replica or spec.worker.max_jobs


@dataclass
class Scaler:
    kube: KubeClient
    emit: AsyncEventSink
    clock: Clock
    cron_lead_seconds: float = 30.0
    queue_status_seconds: float = 15.0
    """The queue numbers in status are rewritten at most this often while nothing else in the
    scaler's status changes (a busy queue would otherwise write every poll)."""

    async def poll(
        self,
        jq: JobQueueSnapshot,
        state: QueueState,
        result: ProbeResult | ProbeError,
        where: str,
    ) -> None:
        """Decide and write for one queue; `where` names its Redis (host:port/db) for people."""
        spec = parse_spec(jq)  # a bad spec is the reconciler's to report
        scaling = state.scaling
        if scaling.history is None:
            scaling.history = hi.from_status(jq.status.get("history"))
            scaling.written = st.owned_part(jq.status, _shape())
            scaling.reachable = _reachable(jq.status)
        stats = self._observe(jq, scaling, result)
        async with state.lock:
            current = state.replicas
            if current is None:
                return  # no Deployment yet: the reconciler creates it, the next poll scales
            now = self.clock()
            decision = decide(
                spec.scaling,
                stats if not isinstance(result, ProbeError) else None,
                scaling.history,
                now,
                current=current,
                jobs_per_replica=jobs_per_replica(spec),
                paused=spec.paused,
                cron_lead_seconds=self.cron_lead_seconds,
            )
            scales = decision.replicas != current and state.deployment is not None
            last_scale = (timestamp(now), decision.reason.value) if scales else None
            # The status (with the history that records this step) is written before the step:
            # an operator killed in between then restarts believing it stepped and waits out the
            # period, instead of stepping a second time. The reverse order would step twice.
            await self._report(jq, spec, state, decision, result, where, last_scale)
            scaling.history = decision.history
            if scales:
                await self._scale(jq, state, decision, current, stats)
        self._export(jq, spec, state, decision)

    # -- observe ------------------------------------------------------------------------------

    def _observe(
        self, jq: JobQueueSnapshot, scaling: ScalingState, result: ProbeResult | ProbeError
    ) -> QueueStats | None:
        if isinstance(result, ProbeError):
            return scaling.stats  # the last known numbers, reported as such
        stats = result.stats
        scaling.throughput = scaling.throughput.observe(stats.pods, saturated=stats.ready > 0)
        stats = replace(stats, completion_rate=scaling.throughput.per_pod)
        scaling.stats = stats
        if result.skipped:
            metrics.PROBE_SKIPPED.labels(jq.namespace, jq.name).inc(result.skipped)
            log.warning(
                "%s/%s: %d due members of queue %r are not arq jobs: skipped",
                jq.namespace,
                jq.name,
                result.skipped,
                jq.spec.get("queueName", "arq:queue"),
            )
        if result.bad_heartbeats:
            metrics.PROBE_BAD_HEARTBEATS.labels(jq.namespace, jq.name).inc(result.bad_heartbeats)
            log.warning(
                "%s/%s: %d heartbeats could not be read: skipped",
                jq.namespace,
                jq.name,
                result.bad_heartbeats,
            )
        return stats

    # -- act ----------------------------------------------------------------------------------

    async def _scale(
        self,
        jq: JobQueueSnapshot,
        state: QueueState,
        decision: Decision,
        current: int,
        stats: QueueStats | None,
    ) -> None:
        if decision.replicas < current and stats is not None:
            # Idle pods first: the ReplicaSet controller deletes the lowest cost first.
            for pod, cost in pod_ranking.deletion_costs(state.pods, stats.pods).items():
                patch = {"metadata": {"annotations": {c.POD_DELETION_COST: str(cost)}}}
                await self.kube.merge_patch(
                    PODS, jq.namespace, pod, patch, manager=c.SCALER_FIELD_MANAGER
                )
        await self.kube.apply(
            DEPLOYMENTS,
            scale_body(jq.ref, decision.replicas),
            manager=c.SCALER_FIELD_MANAGER,
            subresource="scale",
        )
        deployment = dict(state.deployment or {})
        deployment["spec"] = {**deployment.get("spec", {}), "replicas": decision.replicas}
        state.saw_deployment(deployment)
        direction = "up" if decision.replicas > current else "down"
        metrics.SCALE_EVENTS.labels(jq.namespace, jq.name, direction, decision.reason.value).inc()
        message = (
            f"scaled {current} -> {decision.replicas} ({decision.reason.value}): {decision.detail}"
        )
        await self.emit(jq.event_target(), "Normal", f"Scaled{direction.capitalize()}", message)
        log.info("%s/%s: %s", jq.namespace, jq.name, message)

    async def _report(
        self,
        jq: JobQueueSnapshot,
        spec: JobQueueSpec,
        state: QueueState,
        decision: Decision,
        result: ProbeResult | ProbeError,
        where: str,
        last_scale: tuple[str, str] | None,
    ) -> None:
        scaling = state.scaling
        reachable = await self._reachability(jq, scaling, result, where)
        failed = isinstance(result, ProbeError)
        queue = None if scaling.stats is None else st.queue_numbers(scaling.stats)
        written = scaling.written or {}
        now = time.monotonic()
        rate_limited = (
            queue is not None
            and written.get("queue") is not None
            and now - scaling.queue_written_at < self.queue_status_seconds
            and not _emptiness_changed(written["queue"], queue)
        )
        report = st.ScalerReport(
            desired=decision.replicas,
            queue=written.get("queue") if rate_limited else queue,
            reachable=reachable,
            limited=None
            if failed
            else st.limited_condition(
                decision, spec.scaling.max_replicas, spec.scaling.min_replicas
            ),
            last_scale=last_scale,
            history=hi.to_status(decision.history),
        )
        wanted = st.scaler_status(written or jq.status, report, now=self.clock())
        if rate_limited and _without_queue(wanted) != _without_queue(written):
            # Something else changes anyway: write the fresh numbers with it.
            report = replace(report, queue=queue)
            wanted = st.scaler_status(written or jq.status, report, now=self.clock())
        if wanted == written:
            return
        await retry_conflicts(
            lambda: self.kube.apply(
                JOBQUEUES,
                status_body(jq, wanted),
                subresource="status",
                manager=c.SCALER_FIELD_MANAGER,
            )
        )
        if wanted.get("queue") != written.get("queue"):
            scaling.queue_written_at = now
        scaling.written = wanted

    async def _reachability(
        self,
        jq: JobQueueSnapshot,
        scaling: ScalingState,
        result: ProbeResult | ProbeError,
        where: str,
    ) -> Condition:
        reachable = not isinstance(result, ProbeError)
        message = f"Redis at {where} answered" if reachable else f"Redis at {where}: {result}"
        condition = Condition(
            ConditionType.REDIS_REACHABLE,
            reachable,
            Reason.REDIS_ANSWERED if reachable else Reason.REDIS_UNREACHABLE,
            message,
        )
        previous, scaling.reachable = scaling.reachable, reachable
        if previous != reachable and (previous is not None or not reachable):
            kind = "Normal" if reachable else "Warning"
            detail = "" if reachable else ": replicas frozen until it answers"
            await self.emit(jq.event_target(), kind, condition.reason.value, message + detail)
        metrics.REDIS_REACHABLE.labels(jq.namespace, jq.name).set(int(reachable))
        return condition

    def _export(
        self, jq: JobQueueSnapshot, spec: JobQueueSpec, state: QueueState, decision: Decision
    ) -> None:
        labels = (jq.namespace, jq.name)
        stats = state.scaling.stats
        if stats is not None:
            metrics.QUEUE_READY.labels(*labels).set(stats.ready)
            metrics.QUEUE_DEFERRED.labels(*labels).set(stats.deferred)
            metrics.QUEUE_RUNNING.labels(*labels).set(stats.running)
            metrics.QUEUE_OLDEST.labels(*labels).set(stats.oldest_ready_seconds)
            metrics.QUEUE_DEAD_LETTERS.labels(*labels).set(stats.dead_letters)
        metrics.REPLICAS_DESIRED.labels(*labels).set(decision.replicas)
        metrics.REPLICAS_CURRENT.labels(*labels).set(state.replicas or 0)
        ready = ((state.deployment or {}).get("status") or {}).get("readyReplicas") or 0
        metrics.REPLICAS_READY.labels(*labels).set(int(ready))
        metrics.REPLICAS_RECOMMENDED.labels(*labels).set(decision.recommendation)
        metrics.REPLICAS_MIN.labels(*labels).set(spec.scaling.min_replicas)
        metrics.REPLICAS_MAX.labels(*labels).set(spec.scaling.max_replicas)
        metrics.SCALING_LIMITED.labels(*labels).set(int(decision.scaling_limited))
        # The alert on the oldest job compares with the queue's own target when it has one.
        if spec.scaling.max_wait_seconds is not None:
            metrics.QUEUE_MAX_WAIT.labels(*labels).set(spec.scaling.max_wait_seconds)
        else:
            with contextlib.suppress(KeyError):
                metrics.QUEUE_MAX_WAIT.remove(*labels)


def _shape() -> dict[str, Any]:
    """The fields the scaler owns, as `status.owned_part` takes them."""
    conditions = [{"type": kind.value} for kind in st.SCALER_CONDITIONS]
    return {**dict.fromkeys(st.SCALER_FIELDS), "conditions": conditions}


def _reachable(status: Mapping[str, Any]) -> bool | None:
    value = st.condition_status(status, ConditionType.REDIS_REACHABLE)
    return None if value is None else value == "True"


def _without_queue(status: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if k != "queue"}


def _emptiness_changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    """A count going to or from zero is news worth writing at once (e.g. the queue drained)."""
    return any(bool(before.get(k)) != bool(after.get(k)) for k in ("ready", "inProgress"))
