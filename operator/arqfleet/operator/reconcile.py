"""Reconcile one JobQueue: make its worker Deployment (and PDB, PodMonitor) match the spec,
then report what is true in its status.

Called by the kopf handlers on create/update/resume and when a Deployment we own drifts or
disappears. Decisions about *what* to render or report live in `workload` and `status`; this
module only sequences the I/O, so every API call it makes goes through `kube.KubeClient`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import ValidationError

from arqfleet.operator import constants as c
from arqfleet.operator import metrics, workload
from arqfleet.operator import status as st
from arqfleet.operator.conditions import Condition, ConditionType, Reason, merge_condition
from arqfleet.operator.kube import (
    DEPLOYMENTS,
    JOBQUEUES,
    PDBS,
    PODMONITORS,
    PODS,
    SECRETS,
    KubeClient,
    retry_conflicts,
)
from arqfleet.operator.models import JobQueueSpec
from arqfleet.operator.redis_pools import RedisPools

log = logging.getLogger(__name__)

# (object the Event is about, type "Normal"/"Warning", reason, message)
EventSink = Callable[[Mapping[str, Any], str, str, str], None]
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class JobQueueSnapshot:
    """The parts of a JobQueue the operator acts on, copied out of kopf's body."""

    name: str
    namespace: str
    uid: str
    generation: int | None
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    deleting: bool = False

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> JobQueueSnapshot:
        meta = body.get("metadata") or {}
        return cls(
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta["uid"],
            generation=meta.get("generation"),
            spec=dict(body.get("spec") or {}),
            status=dict(body.get("status") or {}),
            deleting=bool(meta.get("deletionTimestamp")),
        )

    @property
    def ref(self) -> workload.JobQueueRef:
        return workload.JobQueueRef(self.name, self.namespace, self.uid)

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    def event_target(self) -> dict[str, Any]:
        return {
            "apiVersion": c.API_VERSION,
            "kind": "JobQueue",
            "metadata": {"name": self.name, "namespace": self.namespace, "uid": self.uid},
        }


class SpecError(Exception):
    """A JobQueue spec the models reject (written before a rule existed, or by a bypass)."""


class ApplyRejected(Exception):
    """The API server refused an object rendered from the spec (e.g. a malformed affinity,
    which the JobQueue schema passes through): retrying cannot help until the spec changes."""


def scaler_owns_replicas(deployment: Mapping[str, Any]) -> bool:
    """Has the scaling field manager claimed spec.replicas? Until it has, every apply must
    keep listing replicas, or server-side apply would drop the field back to 1."""
    for entry in (deployment.get("metadata") or {}).get("managedFields") or ():
        if entry.get("manager") != c.SCALER_FIELD_MANAGER:
            continue
        fields = entry.get("fieldsV1") or {}
        if "f:replicas" in (fields.get("f:spec") or {}):
            return True
    return False


# Status writes by the controller manager can move a new Deployment's resourceVersion several
# times within a second; each costs one GET here.
HAND_OFF_ATTEMPTS = 10


def scale_body(ref: workload.JobQueueRef, replicas: int) -> dict[str, Any]:
    """A server-side apply of the scale subresource: the scaler's one field."""
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {"name": ref.worker_name, "namespace": ref.namespace},
        "spec": {"replicas": replicas},
    }


@dataclass
class Reconciler:
    kube: KubeClient
    emit: EventSink
    clock: Clock = utcnow
    # Deployment generation right after our last apply: a Deployment event with a newer
    # generation means someone else changed its spec (drift), an equal one is just status.
    applied_generation: dict[tuple[str, str], int] = field(default_factory=dict)
    secret_problems: dict[tuple[str, str], Condition] = field(default_factory=dict)
    redis: RedisPools | None = None
    _redis_urls: dict[tuple[str, str], str] = field(default_factory=dict)
    _redis_reported: dict[tuple[str, str], str] = field(default_factory=dict)
    discovery_cache_seconds: float = 60
    _podmonitor_api: tuple[bool, float] | None = None  # (served?, monotonic time of the answer)
    # kopf runs JobQueue and Deployment handlers concurrently; one JobQueue's reconciles (and,
    # later, its scaling writes) take turns, or a stale read could undo a fresh write.
    _locks: defaultdict[tuple[str, str], asyncio.Lock] = field(
        default_factory=lambda: defaultdict(asyncio.Lock)
    )

    def lock(self, key: tuple[str, str]) -> asyncio.Lock:
        return self._locks[key]

    # -- entry points -----------------------------------------------------------------------

    async def reconcile(self, jq: JobQueueSnapshot, *, cause: str) -> Condition:
        """Apply the workload and report status. Returns the Ready condition it reported."""
        async with self.lock(jq.key):
            return await self._reconcile(jq, cause=cause)

    async def _reconcile(self, jq: JobQueueSnapshot, *, cause: str) -> Condition:
        started = time.monotonic()
        try:
            spec = self._parse(jq)
            secret_problem = await self._check_secret(jq, spec)
            try:
                deployment = await self._apply_deployment(jq, spec, cause=cause)
                await self._apply_optional(jq, spec)
            except ApiException as error:
                if not _is_rejection(error):
                    raise
                await self._report_rejected(jq, error)
                raise ApplyRejected(_api_message(error)) from error
            condition = await self.report(jq, deployment, secret_problem=secret_problem, spec=spec)
        except Exception as error:
            metrics.RECONCILE_ERRORS.labels(type(error).__name__).inc()
            raise
        elapsed = time.monotonic() - started
        metrics.RECONCILE_SECONDS.labels(cause).observe(elapsed)
        log.info(
            "reconciled %s/%s (%s) in %.1f ms: %s",
            jq.namespace,
            jq.name,
            cause,
            elapsed * 1000,
            condition.reason.value,
        )
        return condition

    async def deployment_event(
        self, event_type: str | None, deployment: Mapping[str, Any], jq: JobQueueSnapshot | None
    ) -> None:
        """A Deployment we own changed: repair drift, or just report its new status."""
        if jq is None or jq.deleting:
            return  # the JobQueue is gone or going: the garbage collector finishes the job
        async with self.lock(jq.key):
            await self._deployment_event(event_type, deployment, jq)

    async def _deployment_event(
        self, event_type: str | None, deployment: Mapping[str, Any], jq: JobQueueSnapshot
    ) -> None:
        if event_type == "DELETED":
            live = await self.kube.get(DEPLOYMENTS, jq.namespace, jq.ref.worker_name)
            fresh = await self.kube.get(JOBQUEUES, jq.namespace, jq.name)
            if live is not None or fresh is None:
                return  # already recreated, or the JobQueue is gone
            if (fresh.get("metadata") or {}).get("deletionTimestamp"):
                return
            metrics.DRIFT_REPAIRS.labels("deleted").inc()
            await self._reconcile(JobQueueSnapshot.from_body(fresh), cause="recreate")
            return
        generation = (deployment.get("metadata") or {}).get("generation")
        applied = self.applied_generation.get(jq.key)
        # Newer than what we applied: someone else changed the spec. Older or equal: an event
        # about our own write (or a stale one) that needs no repair.
        if generation is not None and (applied is None or generation > applied):
            await self._reconcile(jq, cause="repair")
            return
        spec = self._parse(jq)
        secret_problem = self.secret_problems.get(jq.key)
        if secret_problem is not None:  # recheck: the user may have created it since
            secret_problem = await self._check_secret(jq, spec)
        await self.report(jq, deployment, secret_problem=secret_problem, spec=spec)

    async def pod_event(self, pod: Mapping[str, Any], jq: JobQueueSnapshot | None) -> None:
        """A worker pod changed. Only a failure that says something about the spec (the
        settings import, a crash loop, a missing Secret key) is worth a status update: a
        crash-looping pod changes neither its Deployment nor its JobQueue, so nothing else
        would ever report it."""
        if jq is None or jq.deleting:
            return
        spec = self._parse(jq)
        if st.pod_problem([pod], spec.worker.settings) is None:
            return
        async with self.lock(jq.key):
            deployment = await self.kube.get(DEPLOYMENTS, jq.namespace, jq.ref.worker_name)
            await self.report(
                jq, deployment, secret_problem=self.secret_problems.get(jq.key), spec=spec
            )

    def forget(self, key: tuple[str, str]) -> None:
        self.applied_generation.pop(key, None)
        self.secret_problems.pop(key, None)
        self._redis_urls.pop(key, None)
        self._redis_reported.pop(key, None)

    # -- steps --------------------------------------------------------------------------------

    def _parse(self, jq: JobQueueSnapshot) -> JobQueueSpec:
        try:
            return JobQueueSpec.model_validate(jq.spec)
        except ValidationError as error:
            raise SpecError(str(error)) from error

    async def _check_secret(self, jq: JobQueueSnapshot, spec: JobQueueSpec) -> Condition | None:
        """Resolve the Redis URL (inline, or from the Secret) and say what is wrong if it
        cannot be. The URL is kept in memory only, for the Redis check."""
        ref = spec.redis.url_secret_ref
        problem = None
        if ref is None:
            self._redis_urls[jq.key] = spec.redis.url or ""
        else:
            secret = await self.kube.get(SECRETS, jq.namespace, ref.name)
            problem = st.secret_problem(secret, ref.name, ref.key)
            url = st.secret_value(secret, ref.key) if problem is None else None
            if url:
                self._redis_urls[jq.key] = url
            else:
                self._redis_urls.pop(jq.key, None)
        previous = self.secret_problems.get(jq.key)
        if problem is None:
            self.secret_problems.pop(jq.key, None)
        else:
            self.secret_problems[jq.key] = problem
            if previous != problem:
                self.emit(jq.event_target(), "Warning", problem.reason.value, problem.message)
        return problem

    async def _apply_deployment(
        self, jq: JobQueueSnapshot, spec: JobQueueSpec, *, cause: str
    ) -> dict[str, Any]:
        ref = jq.ref
        live = await self.kube.get(DEPLOYMENTS, jq.namespace, ref.worker_name)
        if live is None:
            replicas = workload.initial_replicas(spec, jq.status.get("desiredReplicas"))
            applied = await self.kube.apply(
                DEPLOYMENTS, workload.deployment(ref, spec, replicas=replicas)
            )
            await self._hand_replicas_to_scaler(jq, applied)
            # Only the first reconcile of a new JobQueue creates; any other cause found it
            # gone (deleted by hand, or while the operator was down).
            reason = "Created" if cause == "create" else "Recreated"
            self.emit(
                jq.event_target(),
                "Normal",
                reason,
                f"{reason.lower()} Deployment {ref.worker_name} with {replicas} replicas",
            )
        else:
            keep = None if scaler_owns_replicas(live) else int(live["spec"].get("replicas", 0))
            applied = await self.kube.apply(
                DEPLOYMENTS, workload.deployment(ref, spec, replicas=keep)
            )
            if keep is not None:
                await self._hand_replicas_to_scaler(jq, applied)
            if applied["metadata"].get("generation") != live["metadata"].get("generation"):
                self._emit_change(jq, cause, ref.worker_name)
        # The generation our own apply produced, from its response: a re-read could already
        # include someone else's edit, which would then pass for ours and never be repaired.
        self.applied_generation[jq.key] = int(applied["metadata"].get("generation", 0))
        return applied

    async def _hand_replicas_to_scaler(
        self, jq: JobQueueSnapshot, applied: Mapping[str, Any]
    ) -> None:
        """Co-own spec.replicas as the scaler, with the value just applied: from now on the
        workload applies can leave replicas out without the field being reset.

        The apply carries a resourceVersion as a precondition. The controller manager writes
        the new Deployment's status a few times in its first second, which only means "read
        again"; but if the replica count itself changed (kubectl scale, the scaling loop), that
        count wins and is not overwritten with ours."""
        replicas = int(applied["spec"].get("replicas", 0))
        current: Mapping[str, Any] | None = applied
        for _ in range(HAND_OFF_ATTEMPTS):
            if current is None or scaler_owns_replicas(current):
                return
            if int(current["spec"].get("replicas", 0)) != replicas:
                return  # someone else set it, and so owns it now
            body = scale_body(jq.ref, replicas)
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            try:
                await self.kube.apply(
                    DEPLOYMENTS, body, manager=c.SCALER_FIELD_MANAGER, subresource="scale"
                )
                return
            except ApiException as error:
                if error.status != 409:
                    raise
            current = await self.kube.get(DEPLOYMENTS, jq.namespace, jq.ref.worker_name)
        raise ApiException(status=409, reason="the Deployment kept changing during the hand-off")

    def _emit_change(self, jq: JobQueueSnapshot, cause: str, name: str) -> None:
        if cause == "repair":
            metrics.DRIFT_REPAIRS.labels("changed").inc()
            self.emit(
                jq.event_target(),
                "Normal",
                "Repaired",
                f"restored the fields arqfleet owns on Deployment {name} after an outside change",
            )
        else:
            self.emit(jq.event_target(), "Normal", "Updated", f"updated Deployment {name}")

    async def _apply_optional(self, jq: JobQueueSnapshot, spec: JobQueueSpec) -> None:
        ref = jq.ref
        budget = workload.pod_disruption_budget(ref, spec)
        if budget is not None:
            await self.kube.apply(PDBS, budget)
        elif await self.kube.get(PDBS, jq.namespace, ref.worker_name) is not None:
            await self.kube.delete(PDBS, jq.namespace, ref.worker_name)
        monitor = workload.pod_monitor(ref, spec)
        if monitor is not None and await self._podmonitors_served():
            await self.kube.apply(PODMONITORS, monitor)

    async def _podmonitors_served(self) -> bool:
        """Is the Prometheus Operator's PodMonitor CRD installed? Absent is normal."""
        now = time.monotonic()
        cached = self._podmonitor_api
        if cached is not None and now - cached[1] < self.discovery_cache_seconds:
            return cached[0]
        served = await self.kube.has_api(
            c.PODMONITOR_GROUP, c.PODMONITOR_VERSION, c.PODMONITOR_PLURAL
        )
        self._podmonitor_api = (served, now)
        return served

    async def report(
        self,
        jq: JobQueueSnapshot,
        deployment: Mapping[str, Any] | None,
        *,
        secret_problem: Condition | None,
        spec: JobQueueSpec,
    ) -> Condition:
        pod_problem = None
        dep_status = (deployment or {}).get("status") or {}
        if deployment is not None and dep_status.get("unavailableReplicas"):
            selector = ",".join(f"{k}={v}" for k, v in workload.selector_labels(jq.ref).items())
            pods = await self.kube.list(PODS, jq.namespace, selector)
            pod_problem = st.pod_problem(pods, spec.worker.settings)
        redis = await self._check_redis(jq)
        observation = st.Observation(deployment, secret_problem, pod_problem, redis)
        patch = st.status_patch(jq.status, observation, generation=jq.generation, now=self.clock())
        condition = st.ready_condition(observation)
        if patch is not None:
            await retry_conflicts(
                lambda: self.kube.merge_patch(
                    JOBQUEUES, jq.namespace, jq.name, {"status": patch}, subresource="status"
                )
            )
        return condition

    async def _check_redis(self, jq: JobQueueSnapshot) -> Condition | None:
        """RedisReachable, from a cached PING of the JobQueue's Redis (None: not known)."""
        url = self._redis_urls.get(jq.key)
        if self.redis is None or not url:
            return None
        result = await self.redis.check(url)
        condition = Condition(
            ConditionType.REDIS_REACHABLE,
            result.reachable,
            Reason.REDIS_ANSWERED if result.reachable else Reason.REDIS_UNREACHABLE,
            result.message,
        )
        # What we last reported, from memory: the JobQueue snapshot a Deployment event brings
        # can predate our own last status write, and would hide (or repeat) a transition.
        previous = self._redis_reported.get(jq.key) or st.condition_status(
            jq.status, ConditionType.REDIS_REACHABLE
        )
        self._redis_reported[jq.key] = condition.status_text
        if previous is not None and previous != condition.status_text:
            self.emit(
                jq.event_target(),
                "Normal" if result.reachable else "Warning",
                condition.reason.value,
                condition.message,
            )
        elif previous is None and not result.reachable:
            self.emit(jq.event_target(), "Warning", condition.reason.value, condition.message)
        metrics.REDIS_REACHABLE.labels(jq.namespace, jq.name).set(int(result.reachable))
        return condition

    async def _report_rejected(self, jq: JobQueueSnapshot, error: ApiException) -> None:
        message = f"the API server rejected the rendered workload: {_api_message(error)}"
        await self._report_failure(
            jq, Condition(ConditionType.READY, False, Reason.APPLY_FAILED, message[:1000])
        )

    async def report_spec_error(self, jq: JobQueueSnapshot, error: SpecError) -> None:
        await self._report_failure(
            jq,
            Condition(
                ConditionType.READY, False, Reason.INVALID_SPEC, f"spec is invalid: {error}"[:1000]
            ),
        )

    async def _report_failure(self, jq: JobQueueSnapshot, condition: Condition) -> None:
        conditions = merge_condition(
            jq.status.get("conditions"), condition, now=self.clock(), generation=jq.generation
        )
        self.emit(jq.event_target(), "Warning", condition.reason.value, condition.message)
        await self.kube.merge_patch(
            JOBQUEUES,
            jq.namespace,
            jq.name,
            {"status": {"conditions": conditions, "observedGeneration": jq.generation}},
            subresource="status",
        )


def _is_rejection(error: ApiException) -> bool:
    """Is this the API server refusing the object itself (not a transient failure)?"""
    if error.status in (400, 422):
        return True
    # Server-side apply reports a value of the wrong shape as a 500 "failed to create typed
    # patch object": the object is wrong, and sending it again gives the same answer.
    return error.status == 500 and "failed to create typed patch object" in _api_message(error)


def _api_message(error: ApiException) -> str:
    """The API server's own sentence (it names the field), not the whole HTTP response."""
    body = error.body.decode() if isinstance(error.body, bytes) else str(error.body or "")
    try:
        return str(json.loads(body).get("message") or error.reason)
    except ValueError:
        return str(error.reason)
