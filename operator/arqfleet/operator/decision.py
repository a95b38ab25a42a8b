"""Pure: how many worker replicas a JobQueue should have, and why.

`decide(scaling, stats, history, now, ...)` reads no clock and does no I/O; the scaling loop
measures (`QueueStats`), calls it, and writes what it returns. The rules, in order:

1. **Recommendation** from the queue alone (`recommend`):
   * depth: ``ceil((ready + running) / jobsPerReplica)``, within HPA's tolerance of 10 % of
     the current size (inside it, the current size stands);
   * latency target (``maxWaitSeconds``): enough pods to drain the ready backlog within the
     target at the per-pod completion rate measured from the heartbeats; until a rate is known,
     an oldest ready job older than the target asks for one pod more than are working;
   * from zero only when ``ready >= activationJobs``; zero only when nothing is ready, running
     or due within the scale-down window (a queue holding only far-future deferred jobs stays
     at zero).
2. **Stabilization**, as HPA does it: scale up to the smallest recommendation of the up window,
   down to the largest of the down window (`history.ScaleHistory`).
3. **Step policies**, as HPA does it: per period, up by at most max(maxPods, maxPercent) and
   down by at most maxPercent, counted from the replicas at the start of the period.
4. **Floors** no window may hold back: at least one pod while jobs are ready (past activation)
   or running, when a cron tick is near, or while learning the cron schedule.
5. Clamp to [minReplicas, maxReplicas]; report when the limits or policies bit.

Faults never scale: without fresh stats (`stats=None`: the probe failed or is stale) the
decision is to hold the current replicas, and the history is left as it was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

from arqfleet.operator.conditions import Reason, ScaleReason
from arqfleet.operator.history import ScaleHistory
from arqfleet.operator.models import ScaleDownPolicy, ScaleUpPolicy, ScalingSpec

# HPA's default tolerance: a load within 10 % of what the current size is meant for is
# treated as a match, so small fluctuations cause no scaling at all.
TOLERANCE = 0.1
# A cron tick is still "due" this long after its time, while its worker starts and runs it.
CRON_GRACE_SECONDS = 60.0
# How long a worker woken to learn the cron schedule may take to publish it, and how long to
# wait before trying again when it never did (a crash-looping or old worker image).
DISCOVERY_TIMEOUT_SECONDS = 300.0
DISCOVERY_RETRY_SECONDS = 3600.0


@dataclass(frozen=True)
class PodLoad:
    """One live pod's heartbeat, as the decision sees it."""

    pod: str
    in_flight: int
    completed: int
    draining: bool = False
    max_jobs: int = 0
    beat_ms: int = 0  # a clock of the pod's own beats (their expiry), for rates only


@dataclass(frozen=True)
class CronInfo:
    """What the workers published about the app's cron schedule."""

    next_tick_seconds: float | None  # from now (Redis time); None: the app has no cron jobs


@dataclass(frozen=True)
class QueueStats:
    """One probe of a queue (all ages and counts against Redis TIME)."""

    ready: int  # due now and not running
    running: int
    deferred: int  # due later
    due_soon: int = 0  # of the deferred, due within the scale-down window
    oldest_ready_seconds: float = 0.0
    # When the oldest ready job became due (epoch ms, arq's enqueue clock): constant while
    # that job waits, unlike its age, so the status can carry it without a write per poll.
    oldest_ready_since_ms: float | None = None
    next_deferred_seconds: float | None = None
    dead_letters: int = 0
    pods: tuple[PodLoad, ...] = ()
    cron: CronInfo | None = None  # None: nothing published (never ran, or expired)
    completion_rate: float | None = None  # jobs/s of one busy pod; None until measured

    @property
    def working_pods(self) -> int:
        return sum(1 for pod in self.pods if not pod.draining)


@dataclass(frozen=True)
class Decision:
    replicas: int  # what the Deployment should have (the current count when holding)
    reason: ScaleReason
    recommendation: int  # from the queue alone, before windows, policies and limits
    limited: Reason  # ScalingLimited: WITHIN_RANGE, or the limit that bit
    detail: str  # the numbers behind it, for Events: "57 ready, 3 running, 10 per replica"
    history: ScaleHistory = field(default_factory=ScaleHistory)

    @property
    def scaling_limited(self) -> bool:
        return self.limited is not Reason.WITHIN_RANGE


def recommend(
    scaling: ScalingSpec, stats: QueueStats, current: int, jobs_per_replica: int
) -> tuple[int, ScaleReason]:
    """Replicas for the queue as it is now, before windows, policies and limits."""
    load = stats.ready + stats.running
    if load == 0:
        if stats.due_soon > 0 and current > 0:
            return 1, ScaleReason.DEFERRED_DUE  # keep a worker for what comes due soon
        return 0, ScaleReason.QUEUE_EMPTY
    if current == 0 and stats.running == 0 and stats.ready < scaling.activation_jobs:
        return 0, ScaleReason.AWAITING_ACTIVATION
    replicas = math.ceil(load / jobs_per_replica)
    if current > 0 and abs(load / (jobs_per_replica * current) - 1) <= TOLERANCE:
        replicas = current
    reason = ScaleReason.QUEUE_DEPTH
    target = scaling.max_wait_seconds
    if target is not None and stats.ready > 0:
        if stats.completion_rate:
            latency = math.ceil(stats.ready / (stats.completion_rate * target))
            if latency > replicas:
                replicas, reason = latency, ScaleReason.LATENCY_TARGET
        elif stats.oldest_ready_seconds > target and stats.working_pods + 1 > replicas:
            # One more than the pods actually working: pods still starting do not count, so
            # this steps once per pod that comes up, not once per poll.
            replicas, reason = stats.working_pods + 1, ScaleReason.OLDEST_JOB_WAITING
    return max(replicas, 1), reason


def scale_up_limit(current: int, history: ScaleHistory, now: float, policy: ScaleUpPolicy) -> int:
    """HPA's calculateScaleUpLimitWithScalingRules with a Pods and a Percent policy, Max."""
    added, removed = history.changed_within(now, policy.period_seconds)
    start = current - added + removed
    by_pods = start + policy.max_pods
    by_percent = math.ceil(start * (1 + policy.max_percent / 100))
    return max(by_pods, by_percent)


def scale_down_limit(
    current: int, history: ScaleHistory, now: float, policy: ScaleDownPolicy
) -> int:
    """HPA's calculateScaleDownLimitWithBehaviors with one Percent policy."""
    added, removed = history.changed_within(now, policy.period_seconds)
    start = current - added + removed
    return int(start * (1 - policy.max_percent / 100))


def _rate_limited(
    scaling: ScalingSpec, stabilized: int, current: int, history: ScaleHistory, now: float
) -> tuple[int, Reason]:
    """HPA's convertDesiredReplicasWithBehaviorRate: the step policies, then the bounds."""
    if stabilized > current:
        limit = max(scale_up_limit(current, history, now, scaling.scale_up), current)
        if scaling.max_replicas > limit:
            allowed, reason = limit, Reason.SCALE_UP_LIMIT
        else:
            allowed, reason = scaling.max_replicas, Reason.TOO_MANY_REPLICAS
        if stabilized > allowed:
            return allowed, reason
    elif stabilized < current:
        limit = min(scale_down_limit(current, history, now, scaling.scale_down), current)
        if scaling.min_replicas < limit:
            allowed, reason = limit, Reason.SCALE_DOWN_LIMIT
        else:
            allowed, reason = scaling.min_replicas, Reason.TOO_FEW_REPLICAS
        if stabilized < allowed:
            return allowed, reason
    return stabilized, Reason.WITHIN_RANGE


def _cron_floor(
    stats: QueueStats, history: ScaleHistory, now: float, current: int, lead: float
) -> tuple[ScaleReason | None, ScaleHistory]:
    """Does a cron tick (or learning the schedule) need a worker now?"""
    cron = stats.cron
    stale = (
        cron is not None
        and cron.next_tick_seconds is not None
        and cron.next_tick_seconds < -CRON_GRACE_SECONDS
    )
    if cron is not None and not stale:
        tick = cron.next_tick_seconds
        due = tick is not None and tick <= lead
        return (ScaleReason.CRON_DUE if due else None), history
    # Unknown: no worker has published since the key expired, or the one that did stopped
    # updating it. Wake one to learn it, at most once per retry period.
    since = history.discovery_since
    if since is not None and now - since < DISCOVERY_TIMEOUT_SECONDS:
        return ScaleReason.CRON_DISCOVERY, history
    idle = current == 0 and stats.working_pods == 0
    if idle and (since is None or now - since >= DISCOVERY_RETRY_SECONDS):
        return ScaleReason.CRON_DISCOVERY, history.discovering(now)
    return None, history


def describe(stats: QueueStats, jobs_per_replica: int, scaling: ScalingSpec) -> str:
    parts = [
        f"{stats.ready} ready",
        f"{stats.running} running",
        f"{jobs_per_replica} per replica",
    ]
    target = scaling.max_wait_seconds
    if target is not None and stats.ready:
        parts.append(f"oldest waiting {stats.oldest_ready_seconds:.0f}s (target {target}s)")
        if stats.completion_rate:
            parts.append(f"{stats.completion_rate:.2f} jobs/s per pod")
    if stats.due_soon:
        parts.append(f"{stats.due_soon} deferred due soon")
    if stats.cron is not None and stats.cron.next_tick_seconds is not None:
        parts.append(f"cron tick in {stats.cron.next_tick_seconds:.0f}s")
    return ", ".join(parts)


def decide(
    scaling: ScalingSpec,
    stats: QueueStats | None,
    history: ScaleHistory,
    now: datetime,
    *,
    current: int,
    jobs_per_replica: int,
    paused: bool = False,
    cron_lead_seconds: float = 30.0,
) -> Decision:
    """The replicas to set now (see the module docstring for the rules)."""
    if stats is None:
        # The queue could not be read: never guess (zeros would scale a busy queue down).
        return Decision(
            current,
            ScaleReason.PROBE_FAILED,
            history.latest if history.latest is not None else current,
            Reason.WITHIN_RANGE,
            "the queue could not be read: replicas held",
            history,
        )
    t = now.timestamp()
    up_window = scaling.scale_up.stabilization_seconds
    down_window = scaling.scale_down.stabilization_seconds
    if history.latest is None:
        # As HPA does for a new autoscaler: the current size counts as just recommended, so
        # the first decisions (also right after a restart without history) cannot scale down
        # before a whole window has passed.
        history = history.record(current, t, up_window=up_window, down_window=down_window)
    recommendation, reason = recommend(scaling, stats, current, jobs_per_replica)
    recorded = history.record(recommendation, t, up_window=up_window, down_window=down_window)
    detail = describe(stats, jobs_per_replica, scaling)
    if paused:
        return Decision(
            current, ScaleReason.PAUSED, recommendation, Reason.WITHIN_RANGE, detail, recorded
        )

    stabilized = current
    stabilized = max(stabilized, recorded.window_min(t, up_window, recommendation))
    stabilized = min(stabilized, recorded.window_max(t, down_window, recommendation))
    if stabilized != recommendation:
        reason = ScaleReason.STABILIZING
    desired, limited = _rate_limited(scaling, stabilized, current, recorded, t)

    floor_reason, recorded = _cron_floor(stats, recorded, t, current, cron_lead_seconds)
    has_work = stats.running > 0 or stats.ready >= scaling.activation_jobs
    has_work = has_work or (current > 0 and stats.ready > 0)
    if desired < 1 and has_work:
        desired, reason = 1, ScaleReason.QUEUE_DEPTH
    elif desired < 1 and floor_reason is not None:
        desired, reason = 1, floor_reason

    bounded = min(max(desired, scaling.min_replicas), scaling.max_replicas)
    if bounded != desired:
        limited = Reason.TOO_MANY_REPLICAS if desired > bounded else Reason.TOO_FEW_REPLICAS
    if bounded != current:
        period = max(scaling.scale_up.period_seconds, scaling.scale_down.period_seconds)
        recorded = recorded.scaled(bounded - current, t, period=period)
    return Decision(bounded, reason, recommendation, limited, detail, recorded)
