"""Pure: what the JobQueue's status should say, and the patch to get there (None if nothing).

Readiness is judged from what the operator observed (the live Deployment, the Redis Secret,
the worker pods); this module only interprets those observations. No I/O, no clock.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from arqfleet.operator.conditions import (
    Condition,
    ConditionType,
    Reason,
    merge_condition,
    timestamp,
)
from arqfleet.operator.decision import Decision, QueueStats

# Exit codes of `arqfleet-worker` (arqfleet.worker.__main__): the settings import path does
# not resolve; the ARQFLEET_* environment is invalid.
EXIT_SETTINGS_NOT_FOUND = 2
EXIT_INVALID_ENVIRONMENT = 3


@dataclass(frozen=True)
class Observation:
    deployment: Mapping[str, Any] | None
    secret_problem: Condition | None = None
    pod_problem: Condition | None = None


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


# Waiting reasons of a container whose image the kubelet cannot get.
IMAGE_PULL_REASONS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)


# kubelet (kuberuntime verifyRunAsNonRoot): the image's USER is a name, not a UID.
NAMED_USER = re.compile(r"image has non-numeric user \((?P<user>[^)]*)\)")


def _container_statuses(pod: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    return (pod.get("status") or {}).get("containerStatuses") or ()


def _exit_problem(status: Mapping[str, Any], settings: str) -> Condition | None:
    """What the worker's own exit code says (its contract: arqfleet.worker.__main__)."""
    for state_key in ("state", "lastState"):
        terminated = (status.get(state_key) or {}).get("terminated") or {}
        detail = (terminated.get("message") or "").strip()
        suffix = f": {detail}" if detail else ""
        if terminated.get("exitCode") == EXIT_SETTINGS_NOT_FOUND:
            return ready(
                False,
                Reason.WORKER_SETTINGS_NOT_FOUND,
                f"worker cannot import spec.worker.settings {settings!r}{suffix}",
            )
        if terminated.get("exitCode") == EXIT_INVALID_ENVIRONMENT:
            return ready(
                False,
                Reason.WORKER_ENVIRONMENT_INVALID,
                f"the worker refused its ARQFLEET_* environment{suffix}",
            )
    return None


def _waiting_problem(status: Mapping[str, Any], redis_secret: str | None) -> Condition | None:
    """Why the kubelet cannot start the container, when that is the spec's fault."""
    waiting = (status.get("state") or {}).get("waiting") or {}
    reason, message = str(waiting.get("reason", "")), str(waiting.get("message", ""))
    if reason in IMAGE_PULL_REASONS:
        image = status.get("image") or "the worker image"
        return ready(
            False,
            Reason.IMAGE_PULL_FAILED,
            f"cannot pull {image} (spec.worker.image): {reason}: {message}".rstrip(": "),
        )
    if reason != "CreateContainerConfigError":
        return None
    named_user = NAMED_USER.search(message)
    if named_user:
        image = status.get("image") or "spec.worker.image"
        return ready(
            False,
            Reason.IMAGE_USER_NOT_NUMERIC,
            f"{image} runs as the user name {named_user['user']!r}, which the kubelet cannot "
            "check for non-root (runAsNonRoot): give the image a numeric USER (e.g. USER 10001) "
            "or set spec.worker.securityContext.runAsUser",
        )
    # kubelet: `secret "x" not found` or `couldn't find key k in Secret ns/x`.
    ours = redis_secret is not None and (
        f'"{redis_secret}"' in message or message.endswith(f"/{redis_secret}")
    )
    if ours and "couldn't find key" in message:
        return ready(False, Reason.REDIS_SECRET_KEY_MISSING, message)
    if ours:
        return ready(False, Reason.REDIS_SECRET_MISSING, message)
    return ready(False, Reason.CONTAINER_CONFIG_ERROR, message)


def _crash_loop(pod: Mapping[str, Any], status: Mapping[str, Any]) -> str | None:
    waiting = (status.get("state") or {}).get("waiting") or {}
    if waiting.get("reason") != "CrashLoopBackOff":
        return None
    terminated = (status.get("lastState") or {}).get("terminated") or {}
    name = (pod.get("metadata") or {}).get("name")
    return f"worker pod {name} is crash-looping (last exit code {terminated.get('exitCode')})"


def pod_problem(
    pods: Iterable[Mapping[str, Any]], settings: str, *, redis_secret: str | None = None
) -> Condition | None:
    """The first worker-pod failure that says something about the JobQueue's spec: an image
    that cannot be pulled, env the kubelet cannot build (the Redis Secret or another one), a
    settings path that does not import, an environment the worker refuses; else a crash loop."""
    crashing: str | None = None
    for pod in pods:
        for status in _container_statuses(pod):
            problem = _waiting_problem(status, redis_secret) or _exit_problem(status, settings)
            if problem is not None:
                return problem
            crashing = crashing or _crash_loop(pod, status)
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
    ready = _with_condition(current, ready_condition(observation), generation=generation, now=now)
    return {
        "observedGeneration": generation,
        "replicas": int(deployment_status.get("replicas") or 0),
        "readyReplicas": int(deployment_status.get("readyReplicas") or 0),
        "conditions": [ready],
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
    return {
        "observedGeneration": generation,
        "replicas": int((current or {}).get("replicas") or 0),
        "readyReplicas": int((current or {}).get("readyReplicas") or 0),
        "conditions": [_with_condition(current, condition, generation=generation, now=now)],
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


# -- the scaling loop's part ------------------------------------------------------------------

LATEST_TIMESTAMP_MS = 253_402_300_800_000  # 10000-01-01T00:00:00Z

SCALER_FIELDS = ("desiredReplicas", "queue", "lastScaleTime", "lastScaleReason", "history")
SCALER_CONDITIONS = (ConditionType.REDIS_REACHABLE, ConditionType.SCALING_LIMITED)


def queue_numbers(stats: QueueStats) -> dict[str, Any]:
    """status.queue. The oldest ready job is given by the time it became due, not its age:
    an age changes every poll, and a queue that is not moving would cost a status write per
    poll (Kubernetes' API conventions say the same: timestamps, not durations, in status).
    `kubectl get jobqueues` shows it as an age."""
    numbers: dict[str, Any] = {
        "ready": stats.ready,
        "deferred": stats.deferred,
        "inProgress": stats.running,
        "deadLetters": stats.dead_letters,
    }
    since = stats.oldest_ready_since_ms
    # A score outside the years 1970-9999 is no enqueue time of arq's: leave it out.
    if stats.ready and since is not None and 0 <= since < LATEST_TIMESTAMP_MS:
        numbers["oldestReadyTime"] = timestamp(datetime.fromtimestamp(since // 1000, UTC))
    return numbers


def limited_condition(decision: Decision, max_replicas: int, min_replicas: int) -> Condition:
    """ScalingLimited, with HPA's reasons and a sentence saying which limit bit."""
    wanted, got = decision.recommendation, decision.replicas
    messages = {
        Reason.WITHIN_RANGE: "the desired replicas are within the limits",
        Reason.TOO_MANY_REPLICAS: f"{wanted} replicas wanted, capped at maxReplicas {max_replicas}",
        Reason.TOO_FEW_REPLICAS: f"{wanted} replicas wanted, raised to minReplicas {min_replicas}",
        Reason.SCALE_UP_LIMIT: f"{wanted} replicas wanted, {got} for now: scaleUp allows no "
        "more per period",
        Reason.SCALE_DOWN_LIMIT: f"{wanted} replicas wanted, {got} for now: scaleDown allows "
        "no fewer per period",
    }
    reason = decision.limited
    return Condition(
        ConditionType.SCALING_LIMITED, decision.scaling_limited, reason, messages[reason]
    )


@dataclass(frozen=True)
class ScalerReport:
    """What the scaling loop knows after one poll of a queue."""

    desired: int
    queue: Mapping[str, Any] | None  # None: never read yet
    reachable: Condition
    limited: Condition | None  # None: not decided this poll (the probe failed): keep it
    last_scale: tuple[str, str] | None  # (time, reason) of a scale made this poll
    history: Mapping[str, Any]


def scaler_status(
    current: Mapping[str, Any] | None, report: ScalerReport, *, now: datetime
) -> dict[str, Any]:
    """The scaling loop's part of the status, complete (see `reconciler_status`)."""
    current = current or {}
    status: dict[str, Any] = {"desiredReplicas": report.desired}
    queue = report.queue if report.queue is not None else current.get("queue")
    if queue is not None:
        status["queue"] = dict(queue)
    if report.last_scale is not None:
        status["lastScaleTime"], status["lastScaleReason"] = report.last_scale
    else:
        for key in ("lastScaleTime", "lastScaleReason"):
            if current.get(key) is not None:
                status[key] = current[key]
    if report.history:
        status["history"] = dict(report.history)
    conditions = [_with_condition(current, report.reachable, generation=None, now=now)]
    if report.limited is not None:
        conditions.append(_with_condition(current, report.limited, generation=None, now=now))
    elif (known := _condition(current, ConditionType.SCALING_LIMITED)) is not None:
        conditions.append(known)
    status["conditions"] = sorted(conditions, key=lambda entry: str(entry["type"]))
    return status
