"""Pure: what the JobQueue's status should say, and the patch to get there (None if nothing).

Readiness is judged from what the operator observed (the live Deployment, the Redis Secret,
the worker pods); this module only interprets those observations. No I/O, no clock.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from arqfleet.operator.conditions import Condition, ConditionType, Reason, merge_condition

# Exit code of `arqfleet-worker` when the settings import path does not resolve.
EXIT_SETTINGS_NOT_FOUND = 2


@dataclass(frozen=True)
class Observation:
    deployment: Mapping[str, Any] | None
    secret_problem: Condition | None = None
    pod_problem: Condition | None = None
    redis: Condition | None = None  # RedisReachable, when the operator could check


def ready(status: bool | None, reason: Reason, message: str) -> Condition:
    return Condition(ConditionType.READY, status, reason, message)


def secret_problem(secret: Mapping[str, Any] | None, name: str, key: str) -> Condition | None:
    """A missing Secret or key is a user error the API schema cannot catch."""
    if secret is None:
        return ready(
            False,
            Reason.REDIS_SECRET_MISSING,
            f"Secret {name!r} named by spec.redis.urlSecretRef does not exist",
        )
    if key not in (secret.get("data") or {}) and key not in (secret.get("stringData") or {}):
        return ready(
            False,
            Reason.REDIS_SECRET_KEY_MISSING,
            f"Secret {name!r} has no key {key!r} (spec.redis.urlSecretRef.key)",
        )
    return None


def _terminations(pod: Mapping[str, Any]) -> Iterable[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    for status in (pod.get("status") or {}).get("containerStatuses") or ():
        for state_key in ("state", "lastState"):
            terminated = (status.get(state_key) or {}).get("terminated")
            if terminated:
                yield status, terminated


def pod_problem(pods: Iterable[Mapping[str, Any]], settings: str) -> Condition | None:
    """The first worker-pod failure that says something about the JobQueue's spec."""
    crashing: str | None = None
    for pod in pods:
        for status, terminated in _terminations(pod):
            if terminated.get("exitCode") == EXIT_SETTINGS_NOT_FOUND:
                detail = (terminated.get("message") or "").strip()
                return ready(
                    False,
                    Reason.WORKER_SETTINGS_NOT_FOUND,
                    f"worker cannot import spec.worker.settings {settings!r}"
                    + (f": {detail}" if detail else ""),
                )
            waiting = (status.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") == "CrashLoopBackOff" and crashing is None:
                crashing = (
                    f"worker pod {pod.get('metadata', {}).get('name')} is crash-looping "
                    f"(last exit code {terminated.get('exitCode')})"
                )
        for status in (pod.get("status") or {}).get("containerStatuses") or ():
            waiting = (status.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") == "CreateContainerConfigError":
                return ready(False, Reason.REDIS_SECRET_MISSING, str(waiting.get("message", "")))
    if crashing is not None:
        return ready(False, Reason.WORKER_CRASHING, crashing)
    return None


def ready_condition(observation: Observation) -> Condition:
    if observation.secret_problem is not None:
        return observation.secret_problem
    deployment = observation.deployment
    if deployment is None:
        return ready(False, Reason.DEPLOYMENT_MISSING, "the worker Deployment does not exist yet")
    if observation.pod_problem is not None:
        return observation.pod_problem
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    for condition in status.get("conditions") or ():
        if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
            # e.g. a missing PriorityClass or a quota: the ReplicaSet cannot create pods.
            return ready(False, Reason.POD_CREATION_FAILED, str(condition.get("message", "")))
        if condition.get("reason") == "ProgressDeadlineExceeded":
            return ready(
                False, Reason.PROGRESS_DEADLINE_EXCEEDED, str(condition.get("message", ""))
            )
    wanted = int(spec.get("replicas", 1))
    available = int(status.get("availableReplicas") or 0)
    if wanted == 0:
        return ready(True, Reason.SCALED_TO_ZERO, "no worker pods: scaled to zero")
    if available >= 1:
        return ready(True, Reason.AVAILABLE, f"{available}/{wanted} worker pods available")
    return ready(False, Reason.PROGRESSING, f"0/{wanted} worker pods available yet")


def _condition(status: Mapping[str, Any] | None, kind: ConditionType) -> dict[str, Any] | None:
    for condition in (status or {}).get("conditions") or ():
        if condition.get("type") == kind.value:
            return dict(condition)
    return None


def _with_condition(
    current: Mapping[str, Any] | None,
    condition: Condition,
    *,
    generation: int | None,
    now: datetime,
) -> dict[str, Any]:
    """One condition entry, keeping its lastTransitionTime unless its status flips."""
    previous = _condition(current, condition.type)
    [entry] = merge_condition(
        [previous] if previous else None, condition, now=now, generation=generation
    )
    return entry


def reconciler_status(
    current: Mapping[str, Any] | None,
    observation: Observation,
    *,
    generation: int | None,
    now: datetime,
) -> dict[str, Any]:
    """The reconciler's part of the status, complete: with server-side apply, a field that a
    writer owns and leaves out of its next apply is removed. The scaling loop owns the rest."""
    deployment_status = (observation.deployment or {}).get("status") or {}
    conditions = [
        _with_condition(current, ready_condition(observation), generation=generation, now=now)
    ]
    redis = observation.redis
    if redis is not None:
        conditions.append(_with_condition(current, redis, generation=generation, now=now))
    elif (known := _condition(current, ConditionType.REDIS_REACHABLE)) is not None:
        conditions.append(known)  # not checked this time: keep what was reported
    return {
        "observedGeneration": generation,
        "replicas": int(deployment_status.get("replicas") or 0),
        "readyReplicas": int(deployment_status.get("readyReplicas") or 0),
        "conditions": sorted(conditions, key=lambda entry: str(entry["type"])),
    }


def failure_status(
    current: Mapping[str, Any] | None,
    condition: Condition,
    *,
    generation: int | None,
    now: datetime,
) -> dict[str, Any]:
    """The reconciler's part of the status when it could not apply the spec: the failure as
    Ready, the replica counts as they were."""
    conditions = [_with_condition(current, condition, generation=generation, now=now)]
    if (known := _condition(current, ConditionType.REDIS_REACHABLE)) is not None:
        conditions.append(known)
    return {
        "observedGeneration": generation,
        "replicas": int((current or {}).get("replicas") or 0),
        "readyReplicas": int((current or {}).get("readyReplicas") or 0),
        "conditions": sorted(conditions, key=lambda entry: str(entry["type"])),
    }


def owned_part(current: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of `current` that `wanted` lists, and of its conditions the types `wanted`
    lists: what one writer owns of the status, to compare with what it wants to write."""
    current = current or {}
    part = {k: current[k] for k in wanted if k != "conditions" and k in current}
    if "conditions" in wanted:
        types = {entry.get("type") for entry in wanted["conditions"]}
        part["conditions"] = sorted(
            (dict(e) for e in current.get("conditions") or () if e.get("type") in types),
            key=lambda e: str(e.get("type")),
        )
    return part


def condition_status(status: Mapping[str, Any] | None, kind: ConditionType) -> str | None:
    for condition in (status or {}).get("conditions") or ():
        if condition.get("type") == kind.value:
            return str(condition.get("status"))
    return None


def secret_value(secret: Mapping[str, Any] | None, key: str) -> str | None:
    """A Secret's value, decoded (data is base64; stringData only before the server merges)."""
    if secret is None:
        return None
    encoded = (secret.get("data") or {}).get(key)
    if encoded is not None:
        return base64.b64decode(encoded).decode()
    plain = (secret.get("stringData") or {}).get(key)
    return str(plain) if plain is not None else None
