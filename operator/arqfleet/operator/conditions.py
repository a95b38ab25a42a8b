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
    WORKER_CRASHING = "WorkerCrashing"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    POD_CREATION_FAILED = "PodCreationFailed"
    APPLY_FAILED = "ApplyFailed"
    # RedisReachable
    REDIS_ANSWERED = "RedisAnswered"
    REDIS_UNREACHABLE = "RedisUnreachable"
    INVALID_SPEC = "InvalidSpec"


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
