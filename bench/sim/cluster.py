"""The simulated fleet: a queue, worker pods and a Deployment's replica count, in fixed ticks.

What it models, and why at this level:

* **Time** advances in ticks of arq's default poll delay (0.5 s): a worker looks for jobs at
  most that often, so waits are measured at that resolution, as a real worker would show them.
* **Jobs** come due at their `due` time and are taken oldest-due first (arq's ZSET order) by
  any Ready, non-draining pod with a free slot (`max_jobs` per pod); a job holds its slot for
  its duration (the asyncio jobs ARQ is for wait on I/O, so slots do not slow each other).
* **Pods** start `start_seconds` after the replica count grows (image pull, interpreter start),
  count as replica-seconds from creation until they exit, and on a scale-down drain: take no
  new jobs, finish what they run, then exit (what the worker runtime does on SIGTERM; the
  grace period is assumed long enough, as the chart sets it).
* **Which pods go** on a scale-down is the policy's: the ReplicaSet controller removes pods not
  yet Ready first, then by `pod-deletion-cost` (arqfleet sets it from the heartbeats: idle
  first), then the newest. Without deletion costs (KEDA + HPA) the newest go, busy or not.

A policy sees the fleet through `Observation` only at its own poll times and answers with the
replica count it wants; the fleet applies it at once (a real Deployment takes ~a second, well
under any poll interval here).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bench.sim.traces import Job, Trace

TICK = 0.5


@dataclass
class Pod:
    name: str
    created: float
    ready_at: float
    max_jobs: int
    running: list[float] = field(default_factory=list)  # end times of the jobs it runs
    completed: int = 0
    draining: bool = False

    def ready(self, now: float) -> bool:
        return now >= self.ready_at

    def free(self) -> int:
        return self.max_jobs - len(self.running)


@dataclass(frozen=True)
class Observation:
    """What a probe of the queue and the heartbeats shows at one instant."""

    now: float
    ready: int  # due and not running
    running: int
    deferred: int
    deferred_dues: Sequence[float]  # sorted due times of the deferred jobs (for due-soon counts)
    oldest_ready_seconds: float
    pods: tuple[Pod, ...]  # live pods (starting, working, draining)
    replicas: int  # the Deployment's spec.replicas


class Policy(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def poll_seconds(self) -> float: ...

    @property
    def ranks_by_idleness(self) -> bool:
        """Sets pod-deletion-cost from the heartbeats, so idle pods go first."""
        ...

    def desired(self, seen: Observation) -> int: ...


@dataclass
class Outcome:
    policy: str
    trace: str
    replica_seconds: float
    waits: list[float]  # per job: start - due
    unfinished: int  # jobs not done by the end of the run (a policy that never scaled)
    scale_events: int
    timeline: list[tuple[float, int, int, int]]  # (t, ready+running, deferred, replicas) per poll


@dataclass
class Queue:
    """The arq queue: jobs not yet enqueued, deferred (sorted by due time) and ready (FIFO)."""

    arrivals: deque[Job]
    future: list[tuple[float, int, Job]] = field(default_factory=list)  # (due, seq, job)
    ready: deque[Job] = field(default_factory=deque)
    seq: Iterator[int] = field(default_factory=itertools.count)

    def advance(self, now: float) -> None:
        while self.arrivals and self.arrivals[0].enqueued <= now:
            job = self.arrivals.popleft()
            bisect.insort(self.future, (job.due, next(self.seq), job))
        while self.future and self.future[0][0] <= now:
            self.ready.append(self.future.pop(0)[2])

    def left(self) -> int:
        return len(self.arrivals) + len(self.future) + len(self.ready)


def _work(pods: list[Pod], queue: Queue, now: float, waits: list[float]) -> list[Pod]:
    """One tick of the workers: finish what is done, exit drained pods, take due jobs."""
    for pod in pods:
        finished = [t for t in pod.running if t <= now]
        if finished:
            pod.running = [t for t in pod.running if t > now]
            pod.completed += len(finished)
    pods = [pod for pod in pods if not (pod.draining and not pod.running)]
    for pod in pods:  # arq workers compete for the oldest due jobs
        if pod.draining or not pod.ready(now):
            continue
        while queue.ready and pod.free() > 0:
            job = queue.ready.popleft()
            waits.append(now - job.due)
            pod.running.append(now + job.duration)
    return pods


def _observe(queue: Queue, pods: list[Pod], now: float, replicas: int) -> Observation:
    return Observation(
        now=now,
        ready=len(queue.ready),
        running=sum(len(pod.running) for pod in pods),
        deferred=len(queue.future),
        deferred_dues=[due for due, _, _ in queue.future],
        oldest_ready_seconds=now - queue.ready[0].due if queue.ready else 0.0,
        pods=tuple(pods),
        replicas=replicas,
    )


def simulate(
    trace: Trace,
    policy: Policy,
    *,
    max_jobs: int,
    start_seconds: float,
    tail_seconds: float = 900.0,
) -> Outcome:
    """Replay `trace` through `policy` until arrivals end plus `tail_seconds` (the same end for
    every policy, so replica-seconds compare)."""
    queue = Queue(deque(sorted(trace.jobs, key=lambda job: job.enqueued)))
    pods: list[Pod] = []
    names = (f"pod-{i}" for i in itertools.count())
    outcome = Outcome(policy.name, trace.name, 0.0, [], 0, 0, [])
    replicas, next_poll = 0, 0.0
    for step in range(int((trace.seconds + tail_seconds) / TICK) + 1):
        now = step * TICK
        queue.advance(now)
        pods = _work(pods, queue, now, outcome.waits)
        outcome.replica_seconds += len(pods) * TICK
        if now < next_poll:
            continue
        next_poll += policy.poll_seconds
        seen = _observe(queue, pods, now, replicas)
        wanted = policy.desired(seen)
        if wanted != replicas:
            outcome.scale_events += 1
            pods = _resize(pods, wanted, now, start_seconds, max_jobs, names, policy)
            replicas = wanted
        outcome.timeline.append((now, seen.ready + seen.running, seen.deferred, replicas))
    outcome.unfinished = queue.left() + sum(len(pod.running) for pod in pods)
    return outcome


def _resize(
    pods: list[Pod],
    wanted: int,
    now: float,
    start_seconds: float,
    max_jobs: int,
    names: Iterator[str],
    policy: Policy,
) -> list[Pod]:
    live = [pod for pod in pods if not pod.draining]
    if wanted > len(live):
        for _ in range(wanted - len(live)):
            pods.append(Pod(next(names), now, now + start_seconds, max_jobs))
        return pods
    leaving = _deletion_order(live, now, by_idleness=policy.ranks_by_idleness)
    for pod in leaving[: len(live) - wanted]:
        pod.draining = True
    return [pod for pod in pods if not (pod.draining and not pod.running)]


def _deletion_order(pods: Sequence[Pod], now: float, *, by_idleness: bool) -> list[Pod]:
    """The ReplicaSet controller's order (pkg/controller/controller_utils.go ActivePods):
    not Ready first, then lower pod-deletion-cost, then newer."""

    def key(pod: Pod) -> tuple[int, int, float]:
        cost = len(pod.running) if by_idleness else 0
        return (1 if pod.ready(now) else 0, cost, -pod.created)

    return sorted(pods, key=key)


def floor_replica_seconds(trace: Trace, *, max_jobs: int, tail_seconds: float = 900.0) -> float:
    """The least any policy could spend: every job starts the tick it is due, on pods packed
    full, that start instantly and vanish the moment they are not needed. No real policy can
    reach it (pods take time to start); it shows how much of a policy's spend is load."""
    ticks = int((trace.seconds + tail_seconds) / TICK) + 2
    change = [0] * (ticks + 1)
    for job in trace.jobs:
        first = min(math.ceil(job.due / TICK), ticks)
        last = min(math.ceil((job.due + job.duration) / TICK), ticks)
        change[first] += 1
        change[last] -= 1
    total, concurrent = 0, 0
    for delta in change:
        concurrent += delta
        total += math.ceil(concurrent / max_jobs)
    return total * TICK
