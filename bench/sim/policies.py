"""The three scaling policies the simulator compares.

(a) `Arqfleet`: the operator's own pure code, unchanged: `decide()` with the CRD's defaults,
    fed the `QueueStats` a probe would measure and the per-pod rate `rates.Throughput` learns
    from the heartbeats, with its `ScaleHistory` carried from poll to poll as the status does.
(b) `KedaHpa(signal=zcard)`: KEDA's Redis scaler as users point it at an arq queue, with
    KEDA's and HPA's defaults. ``ZCARD`` of the queue counts deferred and running jobs too
    (arq keeps a job in its ZSET until it ends).
(c) `KedaHpa(signal=ready_running)`: the same KEDA + HPA machinery fed arqfleet's signal, so
    what is left between (a) and (c) is the policy, not the metric.

The KEDA + HPA model is written here from the upstream sources, independently of arqfleet's
decision module (reusing that would make the baseline agree with us by construction):

* KEDA (pkg/scaling/executor/scale_scaledobjects.go): every ``pollingInterval`` (30 s) the
  scaler is asked if the queue is active (``> activationListLength``, default 0). Inactive
  workloads at zero go to one replica on the first active poll; an active one goes back to
  zero once no poll was active for ``cooldownPeriod`` (300 s). Between 1 and N, HPA scales.
* HPA (pkg/controller/podautoscaler/horizontal.go), every 15 s, External metric with an
  AverageValue target: ``usageRatio = metric / (target * current)``; within the 0.1 tolerance
  the current size stands, else ``ceil(metric / target)``; then
  ``stabilizeRecommendationWithBehaviors`` (up window 0 s, down window 300 s) and
  ``convertDesiredReplicasWithBehaviorRate`` with the default behaviour (up: max of 100 % and
  4 pods per 15 s; down: 100 % per 15 s), clamped to [1, maxReplicas] (KEDA's HPA has
  minReplicas 1: zero is KEDA's).
* The AverageValue target is ``jobsPerReplica`` (the pods' ``max_jobs``), the same per-pod
  target arqfleet uses, so both aim at the same size for the same load.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum

from arqfleet.operator.decision import CronInfo, PodLoad, QueueStats, decide
from arqfleet.operator.history import ScaleHistory
from arqfleet.operator.models import ScalingSpec
from arqfleet.operator.rates import Throughput
from bench.sim.cluster import Observation

# The simulation's t = 0 as a wall-clock instant (decide() takes datetimes; any epoch works).
EPOCH = 1_700_000_000.0


@dataclass
class Arqfleet:
    scaling: ScalingSpec
    jobs_per_replica: int
    name: str = "arqfleet"
    ranks_by_idleness: bool = True
    history: ScaleHistory = field(default_factory=ScaleHistory)
    throughput: Throughput = field(default_factory=Throughput)

    @property
    def poll_seconds(self) -> float:
        return float(self.scaling.poll_seconds)

    def desired(self, seen: Observation) -> int:
        stats = self.stats(seen)
        self.throughput = self.throughput.observe(stats.pods, saturated=stats.ready > 0)
        stats = QueueStats(**{**stats.__dict__, "completion_rate": self.throughput.per_pod})
        decision = decide(
            self.scaling,
            stats,
            self.history,
            datetime.fromtimestamp(EPOCH + seen.now, tz=UTC),
            current=seen.replicas,
            jobs_per_replica=self.jobs_per_replica,
        )
        self.history = decision.history
        return decision.replicas

    def stats(self, seen: Observation) -> QueueStats:
        """What queue_probe.probe measures, from the simulated queue."""
        horizon = seen.now + self.scaling.scale_down.stabilization_seconds
        beat_ms = int((EPOCH + seen.now) * 1000)
        return QueueStats(
            ready=seen.ready,
            running=seen.running,
            deferred=seen.deferred,
            due_soon=bisect.bisect_right(seen.deferred_dues, horizon),
            oldest_ready_seconds=seen.oldest_ready_seconds,
            next_deferred_seconds=(
                seen.deferred_dues[0] - seen.now if seen.deferred_dues else None
            ),
            # Only pods whose worker runs beat; a pod still starting has no heartbeat yet.
            pods=tuple(
                PodLoad(p.name, len(p.running), p.completed, p.draining, p.max_jobs, beat_ms)
                for p in seen.pods
                if p.ready(seen.now)
            ),
            cron=CronInfo(next_tick_seconds=None),  # the app published: it has no cron jobs
        )


class Signal(Enum):
    ZCARD = "zcard"  # KEDA's Redis scaler: ZCARD of the queue (ready + running + deferred)
    READY_RUNNING = "ready+running"  # arqfleet's signal


@dataclass
class KedaHpa:
    signal: Signal
    target: int  # AverageValue per replica
    max_replicas: int
    name: str = "keda+hpa"
    polling_interval: float = 30.0  # KEDA's default
    cooldown: float = 300.0  # KEDA's default cooldownPeriod
    tolerance: float = 0.1
    down_window: float = 300.0
    period: float = 15.0  # HPA's sync period and its default policies' period
    ranks_by_idleness: bool = False
    poll_seconds: float = 15.0  # the HPA sync period; KEDA's polls fall on every other one
    last_active: float | None = None
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    events: list[tuple[float, int]] = field(default_factory=list)  # (t, replicas added)

    def metric(self, seen: Observation) -> int:
        if self.signal is Signal.ZCARD:
            return seen.ready + seen.running + seen.deferred
        return seen.ready + seen.running

    def desired(self, seen: Observation) -> int:
        metric, current, now = self.metric(seen), seen.replicas, seen.now
        if now % self.polling_interval < self.poll_seconds:  # a KEDA poll
            if metric > 0:
                self.last_active = now
                if current == 0:
                    return self._record(now, 1, current)
            elif current > 0 and (
                self.last_active is None or now - self.last_active >= self.cooldown
            ):
                self.recommendations.clear()
                return self._record(now, 0, current)
        if current == 0:
            return 0  # HPA does not scale a workload at zero ("ScalingDisabled")
        usage = metric / (self.target * current)
        raw = current if abs(usage - 1) <= self.tolerance else math.ceil(metric / self.target)
        return self._record(now, self._normalize(now, raw, current), current)

    def _normalize(self, now: float, raw: int, current: int) -> int:
        if not self.recommendations:  # maybeInitScaleDownStabilizationWindow
            self.recommendations.append((now, current))
        down = raw
        for at, recommended in self.recommendations:
            if at > now - self.down_window:
                down = max(down, recommended)
        self.recommendations = [
            (at, r) for at, r in self.recommendations if at > now - self.down_window
        ]
        self.recommendations.append((now, raw))
        stabilized = min(max(current, raw), down)  # up window 0: the up recommendation is raw
        added = sum(d for at, d in self.events if at > now - self.period and d > 0)
        removed = -sum(d for at, d in self.events if at > now - self.period and d < 0)
        start = current - added + removed
        if stabilized > current:
            limit = max(start + 4, math.ceil(start * 2))
            stabilized = min(stabilized, limit, self.max_replicas)
        elif stabilized < current:
            stabilized = max(stabilized, 0)  # 100 % per period: no limit left
        return max(1, min(stabilized, self.max_replicas))

    def _record(self, now: float, replicas: int, current: int) -> int:
        if replicas != current:
            self.events = [(at, d) for at, d in self.events if at > now - self.period]
            self.events.append((now, replicas - current))
        return replicas


def arqfleet(max_jobs: int, max_replicas: int) -> Arqfleet:
    """arqfleet with the CRD's defaults (pollSeconds 5, HPA-like windows and steps)."""
    return Arqfleet(ScalingSpec(max_replicas=max_replicas), jobs_per_replica=max_jobs)


def keda_zcard(max_jobs: int, max_replicas: int) -> KedaHpa:
    return KedaHpa(Signal.ZCARD, max_jobs, max_replicas, name="keda+hpa (ZCARD)")


def keda_ready_running(max_jobs: int, max_replicas: int) -> KedaHpa:
    return KedaHpa(Signal.READY_RUNNING, max_jobs, max_replicas, name="keda+hpa (ready+running)")
