"""What the operator remembers about each JobQueue between events: one object per queue, shared
by the reconciler (workload + Ready) and the scaling loop (replicas + queue status).

Memory only, and rebuilt on restart: everything here is either re-read from the cluster on the
first event (the Deployment, the pods, the Secret) or restored from the JobQueue's status (the
scaling history). Nothing here does I/O; the lock is what keeps the two writers in turn.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from arqfleet.operator import constants as c
from arqfleet.operator.conditions import Condition
from arqfleet.operator.decision import QueueStats
from arqfleet.operator.history import ScaleHistory
from arqfleet.operator.rates import Throughput

Key = tuple[str, str]  # (namespace, name)


def template_fingerprint(deployment: Mapping[str, Any]) -> str:
    """A digest of a Deployment's spec without `replicas`.

    Two Deployments with the same fingerprint differ at most in their replica count, which
    belongs to the scaling loop: a scale is not drift, any other spec change is.
    """
    spec = {k: v for k, v in (deployment.get("spec") or {}).items() if k != "replicas"}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class PodView:
    """What the scaler needs of one worker pod, from the pod watch."""

    name: str
    deletion_cost: int | None  # the pod-deletion-cost annotation, if any
    terminating: bool

    @classmethod
    def from_body(cls, pod: Mapping[str, Any]) -> PodView:
        meta = pod.get("metadata") or {}
        raw = (meta.get("annotations") or {}).get(c.POD_DELETION_COST)
        try:
            cost = int(raw) if raw is not None else None
        except ValueError:
            cost = None  # someone else's value: ours replaces it when it matters
        return cls(str(meta.get("name")), cost, bool(meta.get("deletionTimestamp")))


@dataclass
class ScalingState:
    """The scaling loop's memory of one queue."""

    history: ScaleHistory | None = None
    """None until restored from the JobQueue's status on the queue's first poll."""
    throughput: Throughput = field(default_factory=Throughput)
    stats: QueueStats | None = None
    """The last successful probe (its numbers are reported while Redis is unreachable)."""
    next_due: float | None = None
    """Monotonic time of the next probe; None until the loop first sees the queue."""
    reachable: bool | None = None
    """RedisReachable as last reported, for transition Events."""
    written: Mapping[str, Any] | None = None
    """The scaler's part of the status as it last wrote it (or found it, at start)."""
    queue_written_at: float = 0.0
    """Monotonic time the queue numbers were last written (they are rate-limited)."""


@dataclass
class QueueState:
    key: Key
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # -- the reconciler's side ----------------------------------------------------------------
    redis_url: str | None = None
    """The resolved Redis URL (inline, or read from the Secret): memory only, never logged."""
    secret_problem: Condition | None = None
    reported: Mapping[str, Any] | None = None
    """The reconciler's part of the status as it last wrote it."""
    applied_fingerprint: str | None = None
    """`template_fingerprint` of the Deployment our last apply produced; a Deployment event
    with another fingerprint means someone else changed its spec."""
    resync_at: float | None = None
    """Monotonic time to reconcile again after an event-driven reconcile failed (kopf runs
    event handlers once and forgets their errors; the scaling loop calls back at this time)."""
    resync_failures: int = 0
    # -- what the watches tell both sides -----------------------------------------------------
    deployment: Mapping[str, Any] | None = None
    """The worker Deployment as last seen (apply response or watch event): its spec.replicas
    and status only (`saw_deployment`)."""
    pods: dict[str, PodView] = field(default_factory=dict)
    # -- the scaling loop's side ----------------------------------------------------------------
    scaling: ScalingState = field(default_factory=ScalingState)

    @property
    def replicas(self) -> int | None:
        """The Deployment's spec.replicas as last seen; None while no Deployment is known."""
        if self.deployment is None:
            return None
        return int((self.deployment.get("spec") or {}).get("replicas", 1))

    def saw_deployment(self, deployment: Mapping[str, Any] | None) -> None:
        """Keep spec.replicas and the status, all that is read later: a whole Deployment
        (its pod template and managedFields) is tens of KB of Python objects, per queue."""
        if deployment is None:
            self.deployment = None
            return
        spec = deployment.get("spec") or {}
        kept_spec = {"replicas": spec["replicas"]} if "replicas" in spec else {}
        self.deployment = {"spec": kept_spec, "status": dict(deployment.get("status") or {})}

    def saw_pod(self, pod: Mapping[str, Any], *, deleted: bool = False) -> None:
        view = PodView.from_body(pod)
        if deleted:
            self.pods.pop(view.name, None)
        else:
            self.pods[view.name] = view


@dataclass
class Fleet:
    """Every JobQueue's state, by (namespace, name)."""

    queues: dict[Key, QueueState] = field(default_factory=dict)

    def __getitem__(self, key: Key) -> QueueState:
        state = self.queues.get(key)
        if state is None:
            state = self.queues[key] = QueueState(key)
        return state

    def get(self, key: Key) -> QueueState | None:
        return self.queues.get(key)

    def forget(self, key: Key) -> QueueState | None:
        return self.queues.pop(key, None)

    def __iter__(self) -> Iterator[QueueState]:
        return iter(list(self.queues.values()))

    def __len__(self) -> int:
        return len(self.queues)
