"""The simulator's model and its KEDA + HPA baseline: if these drift, every figure in
bench/RESULTS.md is wrong, so the parts a comparison leans on are pinned here."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bench.sim import traces
from bench.sim.cluster import Observation, Pod, _deletion_order, floor_replica_seconds, simulate
from bench.sim.policies import KedaHpa, Signal, arqfleet, keda_ready_running, keda_zcard
from bench.sim.traces import Job, Trace


@dataclass
class Fixed:
    """A policy that always wants the same number of replicas."""

    replicas: int
    name: str = "fixed"
    poll_seconds: float = 5.0
    ranks_by_idleness: bool = False

    def desired(self, seen: Observation) -> int:
        return self.replicas


def seen(
    now: float, *, ready: int = 0, running: int = 0, deferred: int = 0, replicas: int = 0
) -> Observation:
    return Observation(now, ready, running, deferred, [], 0.0, (), replicas)


def test_every_job_runs_once_and_waits_are_start_minus_due() -> None:
    jobs = (Job(0.0, 0.0, 1.0), Job(0.0, 10.0, 1.0), Job(3.0, 3.0, 50.0))
    outcome = simulate(Trace("t", jobs, 60.0), Fixed(1), max_jobs=1, start_seconds=2.0)
    assert outcome.unfinished == 0
    # The pod is Ready at 2 s: job 1 waits 2 s, job 3 (due 3 s) starts at 3 s once job 1 ends,
    # job 2 (due 10 s) waits for job 3's slot until 53 s.
    assert sorted(outcome.waits) == [0.0, 2.0, 43.0]


def test_a_policy_that_never_scales_leaves_the_jobs_unfinished() -> None:
    outcome = simulate(traces.make("bursty"), Fixed(0), max_jobs=10, start_seconds=5.0)
    assert outcome.waits == []
    assert outcome.unfinished == len(traces.make("bursty").jobs)
    assert outcome.replica_seconds == 0


def test_scale_down_drains_the_idle_pods_first_only_when_asked() -> None:
    busy = Pod("busy", created=0.0, ready_at=0.0, max_jobs=2, running=[100.0])
    idle = Pod("idle", created=1.0, ready_at=1.0, max_jobs=2)
    older_idle = Pod("older-idle", created=-1.0, ready_at=0.0, max_jobs=2)
    assert [p.name for p in _deletion_order([busy, idle, older_idle], 5.0, by_idleness=True)] == [
        "idle",
        "older-idle",
        "busy",
    ]
    # The ReplicaSet controller alone: the newest first, busy or not.
    newest = Pod("newest-busy", created=2.0, ready_at=2.0, max_jobs=2, running=[100.0])
    order = _deletion_order([idle, newest], 5.0, by_idleness=False)
    assert order[0].name == "newest-busy"


def test_keda_activates_only_at_its_own_poll_and_hpa_ignores_a_workload_at_zero() -> None:
    keda = KedaHpa(Signal.READY_RUNNING, target=10, max_replicas=50)
    assert keda.desired(seen(15.0, ready=100)) == 0  # an HPA sync, not a KEDA poll: still zero
    assert keda.desired(seen(30.0, ready=100)) == 1  # KEDA's poll: zero to one


def test_hpa_steps_up_by_four_pods_or_doubling_per_period() -> None:
    keda = KedaHpa(Signal.READY_RUNNING, target=10, max_replicas=50)
    assert keda.desired(seen(30.0, ready=1000)) == 1
    assert keda.desired(seen(45.0, ready=1000, replicas=1)) == 5  # max(1 + 4, 1 x 2)
    assert keda.desired(seen(60.0, ready=1000, replicas=5)) == 10  # max(5 + 4, 5 x 2)
    assert keda.desired(seen(75.0, ready=1000, replicas=10)) == 20


def test_hpa_holds_the_highest_recommendation_of_the_last_five_minutes() -> None:
    keda = KedaHpa(Signal.READY_RUNNING, target=10, max_replicas=50)
    keda.desired(seen(30.0, ready=50))
    assert keda.desired(seen(45.0, ready=50, replicas=1)) == 5
    for t in range(60, 345, 15):
        assert keda.desired(seen(float(t), running=1, replicas=5)) == 5, t
    assert keda.desired(seen(360.0, running=1, replicas=5)) == 1  # the window passed


def test_keda_goes_to_zero_after_the_cooldown_since_the_last_active_poll() -> None:
    keda = KedaHpa(Signal.READY_RUNNING, target=10, max_replicas=50)
    assert keda.desired(seen(0.0, ready=1)) == 1
    assert keda.desired(seen(270.0, replicas=1)) == 1
    assert keda.desired(seen(300.0, replicas=1)) == 0


def test_zcard_counts_deferred_jobs_and_ready_running_does_not() -> None:
    assert keda_zcard(10, 50).metric(seen(0.0, deferred=500)) == 500
    assert keda_ready_running(10, 50).metric(seen(0.0, deferred=500)) == 0


@pytest.mark.parametrize("name", list(traces.GENERATORS))
def test_traces_are_seeded_and_every_policy_finishes_them_above_the_floor(name: str) -> None:
    trace = traces.make(name)
    assert trace == traces.make(name)  # the same seed, the same jobs
    assert trace != traces.make(name, seed=2)
    assert all(job.due >= job.enqueued for job in trace.jobs)
    floor = floor_replica_seconds(trace, max_jobs=10)
    for policy in (arqfleet(10, 50), keda_zcard(10, 50), keda_ready_running(10, 50)):
        outcome = simulate(trace, policy, max_jobs=10, start_seconds=5.0)
        assert outcome.unfinished == 0, policy.name
        assert outcome.replica_seconds > floor, policy.name
