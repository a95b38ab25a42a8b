"""Reconcile one JobQueue: make its worker Deployment (and PDB, PodMonitor) match the spec,
then report the Ready condition in its status.

One shape, three steps: observe (every read this reconcile needs, concurrently), plan (pure:
`workload.plan` decides what to write, `status` what to report), act (the writes, then the
status through server-side apply as field manager `arqfleet`). Replicas and the queue's part of
the status belong to the scaling loop (field manager `arqfleet-scaler`); this module never
writes them, and a Deployment change that only moves replicas is not drift.

Called by the kopf handlers on create/update/resume and when a Deployment we own drifts or
disappears. Every API call goes through `kube.KubeClient`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import ValidationError

from arqfleet.operator import constants as c
from arqfleet.operator import metrics, workload
from arqfleet.operator import status as st
from arqfleet.operator.conditions import Condition, ConditionType, Reason
from arqfleet.operator.kube import (
    DEPLOYMENTS,
    JOBQUEUES,
    PDBS,
    PODMONITORS,
    PODS,
    SECRETS,
    KubeClient,
    is_gone,
    retry_conflicts,
)
from arqfleet.operator.models import JobQueueSpec
from arqfleet.operator.state import Fleet, QueueState, template_fingerprint

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

    @functools.cached_property
    def parsed(self) -> JobQueueSpec | str:
        """The spec validated once per snapshot, or what is wrong with it. The scaling loop
        asks for it every tick (its period): parsing each time was most of the operator's
        CPU at 1,000 JobQueues. A frozen dataclass still takes a cached_property (it writes
        the instance's __dict__ directly)."""
        try:
            return JobQueueSpec.model_validate(self.spec)
        except ValidationError as error:
            return describe_validation_error(error)

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


def parse_spec(jq: JobQueueSnapshot) -> JobQueueSpec:
    parsed = jq.parsed
    if isinstance(parsed, str):
        raise SpecError(parsed)  # a new exception each time: a raised one keeps its traceback
    return parsed


def describe_validation_error(error: ValidationError) -> str:
    """The field paths and messages of a validation error, and nothing of the input.

    pydantic's own text quotes the offending value (`input_value=...`), which for a Redis URL
    written around the schema is a password: it would reach the status, an Event and the log.
    The exception is not chained for the same reason (a traceback would print it)."""
    parts = []
    for entry in error.errors(include_input=False, include_url=False, include_context=False):
        where = ".".join(str(part) for part in ("spec", *entry["loc"]))
        parts.append(f"{where}: {entry['msg']}")
    return "; ".join(parts)


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


# Back-off of the resyncs after failed event-driven reconciles: soon, then up to 5 minutes.
RESYNC_FIRST_SECONDS = 1.0
RESYNC_MAX_SECONDS = 300.0

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


def status_body(jq: JobQueueSnapshot, status: Mapping[str, Any]) -> dict[str, Any]:
    """A server-side apply of the JobQueue's /status listing exactly one writer's fields."""
    return {
        "apiVersion": c.API_VERSION,
        "kind": "JobQueue",
        "metadata": {"name": jq.name, "namespace": jq.namespace},
        "status": dict(status),
    }


@dataclass(frozen=True)
class Observed:
    """Everything one reconcile reads before it decides anything."""

    deployment: Mapping[str, Any] | None
    secret: Mapping[str, Any] | None
    pdb_exists: bool
    podmonitors_served: bool
    podmonitor_exists: bool = False


@dataclass
class Reconciler:
    kube: KubeClient
    emit: EventSink
    fleet: Fleet
    clock: Clock = utcnow
    discovery_cache_seconds: float = 60
    max_concurrent: int = 10
    _podmonitor_api: tuple[bool, float] | None = None  # (served?, monotonic time of the answer)
    _slots: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self._slots = asyncio.Semaphore(self.max_concurrent)

    # -- entry points -----------------------------------------------------------------------

    async def reconcile(self, jq: JobQueueSnapshot, *, cause: str) -> Condition:
        """Apply the workload and report status. Returns the Ready condition it reported."""
        state = self.fleet[jq.key]
        # A slot first (OperatorSettings.max_concurrent_reconciles), outside the lock, so a
        # queue waiting for a slot does not hold up its own scaling meanwhile. Then: kopf runs
        # JobQueue, Deployment and pod handlers concurrently, and the scaling loop writes
        # too: one JobQueue's writers take turns, or a stale read could undo a write.
        async with self._slots, state.lock:
            return await self._reconcile(jq, state, cause=cause)

    async def _reconcile(self, jq: JobQueueSnapshot, state: QueueState, *, cause: str) -> Condition:
        started = time.monotonic()
        try:
            spec = parse_spec(jq)
            observed = await self._observe(jq, spec)
            self._resolve_redis(jq, state, spec, observed.secret)
            plan = workload.plan(
                jq.ref,
                spec,
                live=observed.deployment,
                scaler_owns_replicas=(
                    observed.deployment is not None and scaler_owns_replicas(observed.deployment)
                ),
                last_desired=jq.status.get("desiredReplicas"),
                pdb_exists=observed.pdb_exists,
                podmonitors_served=observed.podmonitors_served,
                podmonitor_exists=observed.podmonitor_exists,
            )
            try:
                deployment = await self._act(jq, state, plan, cause=cause)
            except ApiException as error:
                if not _is_rejection(error):
                    raise
                await self._report_rejected(jq, state, error)
                raise ApplyRejected(_api_message(error)) from error
            condition = await self._report(jq, state, deployment, spec)
        except Exception as error:
            metrics.RECONCILE_ERRORS.labels(type(error).__name__).inc()
            raise
        state.resync_at, state.resync_failures = None, 0
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
        state = self.fleet[jq.key]
        async with state.lock, self._retried_later(state):
            if event_type == "DELETED":
                state.saw_deployment(None)
                await self._deployment_deleted(jq, state)
                return
            state.saw_deployment(deployment)
            # A fingerprint other than our last apply's: someone else changed the spec. Only
            # the replicas differing is the scaling loop's business, not drift.
            if template_fingerprint(deployment) != state.applied_fingerprint:
                await self._reconcile(jq, state, cause="repair")
                return
            spec = parse_spec(jq)
            if state.secret_problem is not None:  # recheck: the user may have created it since
                secret = await self._read_secret(jq, spec)
                self._resolve_redis(jq, state, spec, secret)
            await self._report(jq, state, deployment, spec)

    async def _deployment_deleted(self, jq: JobQueueSnapshot, state: QueueState) -> None:
        live, fresh = await asyncio.gather(
            self.kube.get(DEPLOYMENTS, jq.namespace, jq.ref.worker_name),
            self.kube.get(JOBQUEUES, jq.namespace, jq.name),
        )
        if live is not None or fresh is None:
            return  # already recreated, or the JobQueue is gone
        if (fresh.get("metadata") or {}).get("deletionTimestamp"):
            return
        metrics.DRIFT_REPAIRS.labels("deleted").inc()
        await self._reconcile(JobQueueSnapshot.from_body(fresh), state, cause="recreate")

    async def pod_event(
        self, pod: Mapping[str, Any], jq: JobQueueSnapshot | None, *, deleted: bool = False
    ) -> None:
        """A worker pod changed. Remember it (the scaler ranks pods from this), and report a
        failure that says something about the spec (the settings import, a crash loop, a
        missing Secret key): a crash-looping pod changes neither its Deployment nor its
        JobQueue, so nothing else would ever report it."""
        if jq is None or jq.deleting:
            return
        state = self.fleet[jq.key]
        state.saw_pod(pod, deleted=deleted)
        spec = parse_spec(jq)
        if (
            deleted
            or st.pod_problem([pod], spec.worker.settings, redis_secret=_secret(spec)) is None
        ):
            return
        async with state.lock, self._retried_later(state):
            deployment = await self.kube.get(DEPLOYMENTS, jq.namespace, jq.ref.worker_name)
            await self._report(jq, state, deployment, spec)

    def forget(self, key: tuple[str, str]) -> None:
        self.fleet.forget(key)

    async def resync(self, jq: JobQueueSnapshot) -> None:
        """Reconcile a queue whose event-driven reconcile failed (called by the scaling loop
        when `QueueState.resync_at` comes): what controller-runtime's requeue does."""
        state = self.fleet[jq.key]
        state.resync_at = None
        try:
            await self.reconcile(jq, cause="resync")
        except (SpecError, ApplyRejected):
            state.resync_failures = 0  # reported in the status; the next spec change retries
        except Exception as error:
            if not is_gone(error):
                self._retry_later(state, error)

    @contextlib.asynccontextmanager
    async def _retried_later(self, state: QueueState) -> AsyncIterator[None]:
        """Schedule a resync when what runs inside fails for a reason a retry may cure."""
        try:
            yield
        except (SpecError, ApplyRejected):
            raise
        except Exception as error:
            if not is_gone(error):
                self._retry_later(state, error)
            raise

    def _retry_later(self, state: QueueState, error: BaseException) -> None:
        state.resync_failures += 1
        delay = min(RESYNC_MAX_SECONDS, RESYNC_FIRST_SECONDS * 2 ** (state.resync_failures - 1))
        state.resync_at = time.monotonic() + delay
        namespace, name = state.key
        log.warning(
            "%s/%s: reconcile failed (%s), trying again in %gs",
            namespace,
            name,
            _api_message(error) if isinstance(error, ApiException) else type(error).__name__,
            delay,
        )

    # -- observe ------------------------------------------------------------------------------

    async def _observe(self, jq: JobQueueSnapshot, spec: JobQueueSpec) -> Observed:
        name = jq.ref.worker_name
        deployment, secret, pdb, served = await asyncio.gather(
            self.kube.get(DEPLOYMENTS, jq.namespace, name),
            self._read_secret(jq, spec),
            # Only to know whether a budget the spec no longer wants must be deleted.
            self.kube.get(PDBS, jq.namespace, name)
            if spec.worker.disruption_budget is None
            else _none(),
            self._podmonitors_served(),
        )
        monitor = None
        if served and not spec.monitoring.pod_monitor:
            # Only to know whether a PodMonitor the spec no longer wants must be deleted.
            monitor = await self.kube.get(PODMONITORS, jq.namespace, name)
        return Observed(deployment, secret, pdb is not None, served, monitor is not None)

    async def _read_secret(
        self, jq: JobQueueSnapshot, spec: JobQueueSpec
    ) -> Mapping[str, Any] | None:
        ref = spec.redis.url_secret_ref
        if ref is None:
            return None
        return await self.kube.get(SECRETS, jq.namespace, ref.name)

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

    def _resolve_redis(
        self,
        jq: JobQueueSnapshot,
        state: QueueState,
        spec: JobQueueSpec,
        secret: Mapping[str, Any] | None,
    ) -> None:
        """The Redis URL (inline, or from the Secret) into memory, and what is wrong if it
        cannot be resolved (a Warning Event the first time)."""
        ref = spec.redis.url_secret_ref
        problem = None
        if ref is None:
            state.redis_url = spec.redis.url
        else:
            problem = st.secret_problem(secret, ref.name, ref.key)
            state.redis_url = st.secret_value(secret, ref.key) if problem is None else None
        previous, state.secret_problem = state.secret_problem, problem
        if problem is not None and previous != problem:
            self.emit(jq.event_target(), "Warning", problem.reason.value, problem.message)

    # -- act ----------------------------------------------------------------------------------

    async def _act(
        self, jq: JobQueueSnapshot, state: QueueState, plan: workload.Plan, *, cause: str
    ) -> dict[str, Any]:
        ref = jq.ref
        applied = await self.kube.apply(DEPLOYMENTS, plan.deployment)
        if plan.hand_off:
            await self._hand_replicas_to_scaler(jq, applied)
        if plan.creates:
            # Only the first reconcile of a new JobQueue creates; any other cause found it
            # gone (deleted by hand, or while the operator was down).
            reason = "Created" if cause == "create" else "Recreated"
            replicas = plan.deployment["spec"]["replicas"]
            message = f"{reason.lower()} Deployment {ref.worker_name} with {replicas} replicas"
            self.emit(jq.event_target(), "Normal", reason, message)
        elif plan.live_generation != applied["metadata"].get("generation"):
            self._emit_change(jq, cause, ref.worker_name)
        # Our own apply's result, from its response: a re-read could already include someone
        # else's edit, which would then pass for ours and never be repaired.
        state.applied_fingerprint = template_fingerprint(applied)
        state.saw_deployment(applied)
        writes: list[Awaitable[Any]] = []
        if plan.pdb is not None:
            writes.append(self.kube.apply(PDBS, plan.pdb))
        elif plan.delete_pdb:
            writes.append(self.kube.delete(PDBS, jq.namespace, ref.worker_name))
        if plan.pod_monitor is not None:
            writes.append(self.kube.apply(PODMONITORS, plan.pod_monitor))
        elif plan.delete_pod_monitor:
            writes.append(self.kube.delete(PODMONITORS, jq.namespace, ref.worker_name))
        await asyncio.gather(*writes)
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

    # -- report -------------------------------------------------------------------------------

    async def _report(
        self,
        jq: JobQueueSnapshot,
        state: QueueState,
        deployment: Mapping[str, Any] | None,
        spec: JobQueueSpec,
    ) -> Condition:
        pod_problem = None
        dep_status = (deployment or {}).get("status") or {}
        if deployment is not None and dep_status.get("unavailableReplicas"):
            selector = ",".join(f"{k}={v}" for k, v in workload.selector_labels(jq.ref).items())
            pods = await self.kube.list(PODS, jq.namespace, selector)
            pod_problem = st.pod_problem(pods, spec.worker.settings, redis_secret=_secret(spec))
        observation = st.Observation(deployment, state.secret_problem, pod_problem)
        condition = st.ready_condition(observation)
        wanted = st.reconciler_status(
            jq.status, observation, generation=jq.generation, now=self.clock()
        )
        await self._write_status(jq, state, wanted)
        return condition

    async def _write_status(
        self, jq: JobQueueSnapshot, state: QueueState, wanted: Mapping[str, Any]
    ) -> None:
        """Apply the reconciler's part of the status, unless it already says exactly that.

        The snapshot kopf hands us may predate our own last write, so what we last wrote counts
        as current too: an unchanged status costs no API call either way."""
        if st.owned_part(jq.status, wanted) == wanted or state.reported == wanted:
            return
        await retry_conflicts(
            lambda: self.kube.apply(
                JOBQUEUES, status_body(jq, wanted), subresource="status", manager=c.FIELD_MANAGER
            )
        )
        state.reported = dict(wanted)

    async def _report_rejected(
        self, jq: JobQueueSnapshot, state: QueueState, error: ApiException
    ) -> None:
        message = f"the API server rejected the rendered workload: {_api_message(error)}"
        await self._report_failure(
            jq, state, Condition(ConditionType.READY, False, Reason.APPLY_FAILED, message[:1000])
        )

    async def report_spec_error(self, jq: JobQueueSnapshot, error: SpecError) -> None:
        state = self.fleet[jq.key]
        async with state.lock:
            await self._report_failure(
                jq,
                state,
                Condition(
                    ConditionType.READY,
                    False,
                    Reason.INVALID_SPEC,
                    f"spec is invalid: {error}"[:1000],
                ),
            )

    async def _report_failure(
        self, jq: JobQueueSnapshot, state: QueueState, condition: Condition
    ) -> None:
        self.emit(jq.event_target(), "Warning", condition.reason.value, condition.message)
        wanted = st.failure_status(jq.status, condition, generation=jq.generation, now=self.clock())
        await self._write_status(jq, state, wanted)


async def _none() -> None:
    return None


def _secret(spec: JobQueueSpec) -> str | None:
    """The name of the Secret holding the Redis URL, if the spec names one."""
    ref = spec.redis.url_secret_ref
    return None if ref is None else ref.name


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
