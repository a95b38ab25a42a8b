"""The pure helpers of the scaling loop: pod costs, throughput, and the scaler's status."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from arqfleet.operator import status as st
from arqfleet.operator.conditions import Condition, ConditionType, Reason, ScaleReason
from arqfleet.operator.decision import Decision, PodLoad, QueueStats
from arqfleet.operator.pod_ranking import deletion_costs
from arqfleet.operator.rates import Throughput
from arqfleet.operator.state import PodView

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def view(name: str, cost: int | None = None, terminating: bool = False) -> PodView:
    return PodView(name, cost, terminating)


def load(pod: str, in_flight: int, completed: int = 0, beat_ms: int = 0) -> PodLoad:
    return PodLoad(pod, in_flight, completed, beat_ms=beat_ms)


def test_idle_pods_cost_least_and_only_changes_are_written() -> None:
    pods = {
        "idle": view("idle"),
        "busy": view("busy", cost=1),
        "busier": view("busier", cost=3),
        "starting": view("starting", cost=0),
        "going": view("going", cost=5, terminating=True),
    }
    loads = [load("idle", 0), load("busy", 2), load("busier", 3), load("going", 1)]
    # busier already says 3, starting (no heartbeat) already says 0, going is on its way out.
    assert deletion_costs(pods, loads) == {"idle": 0, "busy": 2}


def test_pod_views_read_the_annotation() -> None:
    pod = {
        "metadata": {
            "name": "p",
            "annotations": {"controller.kubernetes.io/pod-deletion-cost": "7"},
            "deletionTimestamp": "2026-11-22T12:00:00Z",
        }
    }
    assert PodView.from_body(pod) == PodView("p", 7, True)
    assert (
        PodView.from_body(
            {
                "metadata": {
                    "name": "q",
                    "annotations": {"controller.kubernetes.io/pod-deletion-cost": "high"},
                }
            }
        ).deletion_cost
        is None
    )


def test_throughput_counts_only_saturated_intervals_between_beats() -> None:
    rate = Throughput()
    rate = rate.observe([load("a", 10, 0, beat_ms=0), load("b", 10, 0, beat_ms=0)], saturated=True)
    assert rate.per_pod is None
    # 10 s later by each pod's own beats: a finished 20 jobs, b 30 -> 2.5 jobs/s per pod.
    rate = rate.observe(
        [load("a", 10, 20, beat_ms=10_000), load("b", 10, 30, beat_ms=10_000)], saturated=True
    )
    assert rate.per_pod == 2.5
    # An interval without a backlog says nothing about capacity.
    idle = rate.observe([load("a", 1, 21, beat_ms=20_000)], saturated=False)
    assert idle.per_pod == 2.5
    # Smoothed: a second interval at 5 jobs/s moves it halfway.
    again = rate.observe([load("a", 10, 70, beat_ms=20_000)], saturated=True)
    assert again.per_pod == 3.75


def test_throughput_ignores_pods_without_a_new_beat_or_restarted() -> None:
    rate = Throughput().observe([load("a", 5, 100, beat_ms=1000)], saturated=True)
    assert rate.observe([load("a", 5, 100, beat_ms=1000)], saturated=True).per_pod is None
    assert rate.observe([load("a", 5, 3, beat_ms=5000)], saturated=True).per_pod is None


def decision(replicas: int, limited: Reason = Reason.WITHIN_RANGE, wanted: int = 3) -> Decision:
    return Decision(replicas, ScaleReason.QUEUE_DEPTH, wanted, limited, "d")


def report(**fields: object) -> st.ScalerReport:
    base: dict[str, object] = {
        "desired": 3,
        "queue": st.queue_numbers(
            QueueStats(
                ready=12,
                running=3,
                deferred=4,
                oldest_ready_seconds=9.6,
                oldest_ready_since_ms=1_795_003_190_400.0,
            )
        ),
        "reachable": Condition(ConditionType.REDIS_REACHABLE, True, Reason.REDIS_ANSWERED, "ok"),
        "limited": st.limited_condition(decision(3), 20, 0),
        "last_scale": None,
        "history": {"recommendation": 3},
    }
    base.update(fields)
    return st.ScalerReport(**base)  # type: ignore[arg-type]


def test_scaler_status_lists_only_its_own_fields() -> None:
    status = st.scaler_status(
        None, report(last_scale=("2026-11-22T12:00:00Z", "QueueDepth")), now=NOW
    )
    assert status["queue"] == {
        "ready": 12,
        "deferred": 4,
        "inProgress": 3,
        "deadLetters": 0,
        "oldestReadyTime": "2026-11-18T11:59:50Z",
    }
    assert status["desiredReplicas"] == 3
    assert status["lastScaleReason"] == "QueueDepth"
    assert [c["type"] for c in status["conditions"]] == ["RedisReachable", "ScalingLimited"]
    assert set(status) == {*st.SCALER_FIELDS, "conditions"}


def test_scaler_status_keeps_what_this_poll_did_not_decide() -> None:
    first = st.scaler_status(
        None, report(last_scale=("2026-11-22T12:00:00Z", "QueueDepth")), now=NOW
    )
    down = Condition(ConditionType.REDIS_REACHABLE, False, Reason.REDIS_UNREACHABLE, "no answer")
    later = st.scaler_status(
        first, report(queue=None, reachable=down, limited=None), now=NOW + timedelta(minutes=1)
    )
    assert later["queue"] == first["queue"]  # the last numbers known
    assert later["lastScaleTime"] == "2026-11-22T12:00:00Z"
    limited = [c for c in later["conditions"] if c["type"] == "ScalingLimited"]
    assert limited == [c for c in first["conditions"] if c["type"] == "ScalingLimited"]
    [redis] = [c for c in later["conditions"] if c["type"] == "RedisReachable"]
    assert (redis["status"], redis["lastTransitionTime"]) == ("False", "2026-11-22T12:01:00Z")


def test_limited_condition_says_which_limit() -> None:
    capped = st.limited_condition(decision(20, Reason.TOO_MANY_REPLICAS, 200), 20, 0)
    assert (capped.status, capped.reason) == (True, Reason.TOO_MANY_REPLICAS)
    assert capped.message == "200 replicas wanted, capped at maxReplicas 20"
    stepped = st.limited_condition(decision(4, Reason.SCALE_UP_LIMIT, 200), 20, 0)
    assert "scaleUp allows no more per period" in stepped.message
    assert st.limited_condition(decision(3), 20, 0).status is False


def test_queue_numbers_of_a_queue_that_does_not_move_stay_the_same() -> None:
    """The same jobs waiting a poll later: older, but status.queue is unchanged (no write)."""
    first = QueueStats(ready=20, running=0, deferred=0, oldest_ready_seconds=30.2,
                       oldest_ready_since_ms=1_795_003_190_400.0)  # fmt: skip
    later = replace(first, oldest_ready_seconds=35.3)
    assert st.queue_numbers(first) == st.queue_numbers(later)


@pytest.mark.parametrize("since", [None, -5_000.0, 1e300])
def test_queue_numbers_leave_out_an_oldest_time_that_is_none_of_arqs(since: float | None) -> None:
    numbers = st.queue_numbers(
        QueueStats(ready=1, running=0, deferred=0, oldest_ready_since_ms=since)
    )
    assert "oldestReadyTime" not in numbers


def test_queue_numbers_of_an_empty_queue_have_no_oldest_time() -> None:
    stats = QueueStats(ready=0, running=2, deferred=0, oldest_ready_since_ms=1_795_003_190_400.0)
    assert "oldestReadyTime" not in st.queue_numbers(stats)
