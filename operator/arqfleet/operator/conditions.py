"""Condition types and reasons, and the pure rules for updating a conditions list.

Conditions follow the Kubernetes API conventions (metav1.Condition): a type, a status of
True/False/Unknown, a CamelCase reason for machines and a sentence for people, and a
lastTransitionTime that moves only when the status flips. Pure: `now` is an argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class ConditionType(StrEnum):
    READY = "Ready"
    REDIS_REACHABLE = "RedisReachable"
    SCALING_LIMITED = "ScalingLimited"


class Reason(StrEnum):
    # Ready=True
    AVAILABLE = "WorkersAvailable"
    SCALED_TO_ZERO = "ScaledToZero"
    # Ready=False
    PROGRESSING = "WorkersProgressing"
    UNAVAILABLE = "WorkersUnavailable"
    DEPLOYMENT_MISSING = "DeploymentMissing"
    REDIS_SECRET_MISSING = "RedisSecretMissing"
    REDIS_SECRET_KEY_MISSING = "RedisSecretKeyMissing"
    WORKER_SETTINGS_NOT_FOUND = "WorkerSettingsNotFound"
    WORKER_ENVIRONMENT_INVALID = "WorkerEnvironmentInvalid"
    IMAGE_PULL_FAILED = "ImagePullFailed"
    CONTAINER_CONFIG_ERROR = "ContainerConfigError"
    IMAGE_USER_NOT_NUMERIC = "ImageUserNotNumeric"
    WORKER_CRASHING = "WorkerCrashing"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    POD_CREATION_FAILED = "PodCreationFailed"
    APPLY_FAILED = "ApplyFailed"
    # RedisReachable
    REDIS_ANSWERED = "RedisAnswered"
    REDIS_UNREACHABLE = "RedisUnreachable"
    INVALID_SPEC = "InvalidSpec"
    # ScalingLimited (the names HPA uses for the same limits)
    WITHIN_RANGE = "DesiredWithinRange"
    TOO_MANY_REPLICAS = "TooManyReplicas"  # the recommendation is above maxReplicas
    TOO_FEW_REPLICAS = "TooFewReplicas"  # the recommendation is below minReplicas
    SCALE_UP_LIMIT = "ScaleUpLimit"  # scaleUp.maxPods / maxPercent per period
    SCALE_DOWN_LIMIT = "ScaleDownLimit"  # scaleDown.maxPercent per period


class ScaleReason(StrEnum):
    """Why the scaler wants the replicas it wants: in Events, status.lastScaleReason and the
    `reason` label of arqfleet_scale_events_total (a closed set, so the label stays bounded)."""

    QUEUE_DEPTH = "QueueDepth"  # ceil((ready + running) / jobsPerReplica)
    LATENCY_TARGET = "LatencyTarget"  # drain the ready backlog within maxWaitSeconds
    OLDEST_JOB_WAITING = "OldestJobWaiting"  # past maxWaitSeconds, throughput not known yet
    DEFERRED_DUE = "DeferredJobsDue"  # deferred jobs come due within the scale-down window
    CRON_DUE = "CronJobDue"  # a cron tick is near and no worker would run it
    CRON_DISCOVERY = "CronDiscovery"  # one worker to learn the app's cron schedule
    AWAITING_ACTIVATION = "AwaitingActivation"  # at zero, fewer ready jobs than activationJobs
    QUEUE_EMPTY = "QueueEmpty"  # nothing ready, running or due soon
    STABILIZING = "StabilizationWindow"  # held (or lowered only this far) by a window
    PAUSED = "Paused"  # spec.paused: replicas frozen
    PROBE_FAILED = "ProbeFailed"  # the queue could not be read: replicas frozen


@dataclass(frozen=True)
class Condition:
    type: ConditionType
    status: bool | None  # None is "Unknown"
    reason: Reason
    message: str

    @property
    def status_text(self) -> str:
        return "Unknown" if self.status is None else str(self.status)


def timestamp(now: datetime) -> str:
    """RFC 3339 in UTC with whole seconds, as the API server writes timestamps."""
    return now.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_condition(
    current: Sequence[dict[str, Any]] | None,
    condition: Condition,
    *,
    now: datetime,
    generation: int | None,
) -> list[dict[str, Any]]:
    """Return the conditions list with `condition` set; other types are kept as they are.

    lastTransitionTime changes only when the status changes, so `kubectl describe` shows
    how long a queue has been unready, not when the operator last looked.
    """
    existing = {c.get("type"): c for c in current or ()}
    previous = existing.get(condition.type.value)
    transition = timestamp(now)
    if previous is not None and previous.get("status") == condition.status_text:
        transition = previous.get("lastTransitionTime") or transition
    entry: dict[str, Any] = {
        "type": condition.type.value,
        "status": condition.status_text,
        "reason": condition.reason.value,
        "message": condition.message,
        "lastTransitionTime": transition,
    }
    if generation is not None:
        entry["observedGeneration"] = generation
    merged = [c for c in current or () if c.get("type") != condition.type.value]
    merged.append(entry)
    return sorted(merged, key=lambda c: str(c.get("type")))
