"""status interprets observations into the Ready condition and patches only on change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from arqfleet.operator import status as st
from arqfleet.operator.conditions import Reason

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


def deployment(wanted: int, available: int = 0, **status: Any) -> dict[str, Any]:
    return {"spec": {"replicas": wanted}, "status": {"availableReplicas": available, **status}}


def pod(**container_status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p-1"}, "status": {"containerStatuses": [container_status]}}


@pytest.mark.parametrize(
    ("observation", "ready", "reason"),
    [
        (st.Observation(None), False, Reason.DEPLOYMENT_MISSING),
        (st.Observation(deployment(0)), True, Reason.SCALED_TO_ZERO),
        (st.Observation(deployment(3, 1)), True, Reason.AVAILABLE),
        (st.Observation(deployment(3, 0)), False, Reason.PROGRESSING),
        (
            st.Observation(
                deployment(
                    2,
                    0,
                    conditions=[
                        {"type": "ReplicaFailure", "status": "True", "message": "no PriorityClass"}
                    ],
                )
            ),
            False,
            Reason.POD_CREATION_FAILED,
        ),
        (
            st.Observation(
                deployment(
                    2,
                    0,
                    conditions=[
                        {
                            "type": "Progressing",
                            "status": "False",
                            "reason": "ProgressDeadlineExceeded",
                        }
                    ],
                )
            ),
            False,
            Reason.PROGRESS_DEADLINE_EXCEEDED,
        ),
        (
            st.Observation(deployment(0), secret_problem=st.secret_problem(None, "s", "url")),
            False,
            Reason.REDIS_SECRET_MISSING,
        ),
    ],
    ids=[
        "no-deployment",
        "zero",
        "available",
        "progressing",
        "replica-failure",
        "deadline",
        "secret-first",
    ],
)
def test_ready_condition(observation: st.Observation, ready: bool, reason: Reason) -> None:
    condition = st.ready_condition(observation)
    assert (condition.status, condition.reason) == (ready, reason)


def test_secret_key_missing() -> None:
    problem = st.secret_problem({"data": {"other": "eA=="}}, "creds", "url")
    assert problem is not None
    assert problem.reason is Reason.REDIS_SECRET_KEY_MISSING
    assert st.secret_problem({"data": {"url": "eA=="}}, "creds", "url") is None


def test_settings_typo_is_named_from_the_exit_code() -> None:
    crashed = pod(
        state={"waiting": {"reason": "CrashLoopBackOff"}},
        lastState={"terminated": {"exitCode": 2, "message": "cannot import app.wrker"}},
    )
    problem = st.pod_problem([crashed], "app.wrker.WorkerSettings")
    assert problem is not None
    assert problem.reason is Reason.WORKER_SETTINGS_NOT_FOUND
    assert "app.wrker.WorkerSettings" in problem.message


def waiting(reason: str, message: str = "", **status: Any) -> dict[str, Any]:
    return pod(state={"waiting": {"reason": reason, "message": message}}, **status)


@pytest.mark.parametrize(
    ("pods", "reason", "fragment"),
    [
        pytest.param(
            [waiting("CrashLoopBackOff", lastState={"terminated": {"exitCode": 1}})],
            Reason.WORKER_CRASHING,
            "last exit code 1",
            id="crash-loop",
        ),
        pytest.param(
            [
                waiting(
                    "CrashLoopBackOff",
                    lastState={"terminated": {"exitCode": 3, "message": "max_jobs"}},
                )
            ],
            Reason.WORKER_ENVIRONMENT_INVALID,
            "max_jobs",
            id="exit-3-environment",
        ),
        pytest.param(
            [waiting("CreateContainerConfigError", 'secret "creds" not found')],
            Reason.REDIS_SECRET_MISSING,
            'secret "creds" not found',
            id="redis-secret-missing",
        ),
        pytest.param(
            [waiting("CreateContainerConfigError", "couldn't find key url in Secret ns/creds")],
            Reason.REDIS_SECRET_KEY_MISSING,
            "couldn't find key url",
            id="redis-secret-key-missing",
        ),
        pytest.param(
            [waiting("CreateContainerConfigError", 'configmap "app-env" not found')],
            Reason.CONTAINER_CONFIG_ERROR,
            'configmap "app-env" not found',
            id="another-env-source",
        ),
        pytest.param(
            [
                waiting(
                    "CreateContainerConfigError",
                    "container has runAsNonRoot and image has non-numeric user (app), cannot "
                    'verify user is non-root (pod: "w-1_ns(uid)", container: worker)',
                    image="ghcr.io/acme/app:9",
                )
            ],
            Reason.IMAGE_USER_NOT_NUMERIC,
            "ghcr.io/acme/app:9 runs as the user name 'app'",
            id="named-user",
        ),
        pytest.param(
            [waiting("ImagePullBackOff", "Back-off pulling image", image="ghcr.io/acme/app:9")],
            Reason.IMAGE_PULL_FAILED,
            "cannot pull ghcr.io/acme/app:9 (spec.worker.image): ImagePullBackOff",
            id="image-pull",
        ),
        pytest.param(
            [waiting("ErrImageNeverPull", "image not present with pull policy of Never")],
            Reason.IMAGE_PULL_FAILED,
            "ErrImageNeverPull",
            id="image-never-pull",
        ),
    ],
)
def test_pod_failures_are_named_for_what_the_user_must_fix(
    pods: list[dict[str, Any]], reason: Reason, fragment: str
) -> None:
    problem = st.pod_problem(pods, "a.B", redis_secret="creds")
    assert problem is not None
    assert problem.reason is reason
    assert fragment in problem.message


def test_a_running_pod_is_no_problem() -> None:
    assert st.pod_problem([pod(state={"running": {}})], "a.B") is None


def changed(current: dict[str, Any] | None, wanted: dict[str, Any]) -> dict[str, Any] | None:
    """What the reconciler would apply: its whole part, or nothing when that is current."""
    return None if st.owned_part(current, wanted) == wanted else wanted


def test_write_only_on_change_and_transition_time_kept() -> None:
    observation = st.Observation(deployment(0))
    first = st.reconciler_status(None, observation, generation=1, now=NOW)
    assert first["conditions"][0]["lastTransitionTime"] == "2026-11-22T12:00:00Z"
    later = NOW + timedelta(minutes=5)
    assert changed(first, st.reconciler_status(first, observation, generation=1, now=later)) is None

    scaled = st.Observation(deployment(2, 2, replicas=2, readyReplicas=2))
    patch = changed(first, st.reconciler_status(first, scaled, generation=1, now=later))
    assert patch is not None
    assert patch["replicas"] == 2
    # Ready stayed True (zero -> available): the transition time does not move.
    assert patch["conditions"][0]["lastTransitionTime"] == "2026-11-22T12:00:00Z"
    assert patch["conditions"][0]["reason"] == "WorkersAvailable"

    broken = st.Observation(deployment(2, 0))
    patch = changed(patch, st.reconciler_status(patch, broken, generation=2, now=later))
    assert patch is not None
    assert patch["conditions"][0]["lastTransitionTime"] == "2026-11-22T12:05:00Z"
    assert patch["observedGeneration"] == 2


def test_owned_part_ignores_the_other_writers_fields() -> None:
    ours = st.reconciler_status(None, st.Observation(deployment(0)), generation=1, now=NOW)
    theirs: dict[str, Any] = {
        "desiredReplicas": 3,
        "queue": {"ready": 5},
        "conditions": [{"type": "ScalingLimited", "status": "False"}],
    }
    merged = {**ours, **theirs, "conditions": [*ours["conditions"], *theirs["conditions"]]}
    assert st.owned_part(merged, ours) == ours


def test_failure_keeps_replica_counts() -> None:
    from arqfleet.operator.conditions import Condition, ConditionType

    current = st.reconciler_status(
        None, st.Observation(deployment(2, 2, replicas=2, readyReplicas=2)), generation=1, now=NOW
    )
    failed = Condition(ConditionType.READY, False, Reason.INVALID_SPEC, "spec is invalid")
    wanted = st.failure_status(current, failed, generation=2, now=NOW)
    assert wanted["replicas"] == 2
    assert wanted["observedGeneration"] == 2
    assert wanted["conditions"][0]["reason"] == "InvalidSpec"


def test_secret_value_decodes_data() -> None:
    assert st.secret_value({"data": {"url": "cmVkaXM6Ly9y"}}, "url") == "redis://r"
    assert st.secret_value({"stringData": {"url": "redis://s"}}, "url") == "redis://s"
    assert st.secret_value(None, "url") is None
