"""Pure: a pod's job throughput, measured from the `completed` counters in its heartbeats.

Each heartbeat carries the pod's count of finished jobs and an expiry that the pod computed
from Redis TIME when it wrote the beat, so between two beats of one pod, the counter's growth
over the expiry's growth is exactly that pod's rate over that interval, whatever the poll
timing. Only intervals in which ready jobs were waiting (at both probes) count: then every pod
runs as many jobs as it can, so jobs per second per pod is its capacity. An idle fleet finishes
only what arrives, which says nothing about capacity and would make the latency target ask for
far too many pods. Estimates are smoothed so one slow interval does not swing the fleet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from arqfleet.operator.decision import PodLoad

# Weight of the newest interval in the running estimate: responsive within a few polls, yet
# one interval with a slow batch of jobs moves it only part of the way.
SMOOTHING = 0.5


@dataclass(frozen=True)
class Throughput:
    """The running estimate: jobs per second of one busy pod, or None until measured."""

    per_pod: float | None = None
    beats: tuple[PodLoad, ...] = ()  # the previous probe's heartbeats
    saturated: bool = False  # ready jobs were waiting at the previous probe

    def observe(self, pods: Sequence[PodLoad], *, saturated: bool) -> Throughput:
        rate = _rate(self.beats, pods) if (self.saturated and saturated) else None
        per_pod = self.per_pod
        if rate is not None:
            per_pod = rate if per_pod is None else SMOOTHING * rate + (1 - SMOOTHING) * per_pod
        return Throughput(per_pod, tuple(pods), saturated)


def _rate(before: Sequence[PodLoad], after: Sequence[PodLoad]) -> float | None:
    """Jobs per second per pod over the pods that beat again since `before`."""
    earlier = {pod.pod: pod for pod in before if not pod.draining}
    jobs = 0
    milliseconds = 0
    for pod in after:
        previous = earlier.get(pod.pod)
        if previous is None or pod.draining:
            continue
        elapsed = pod.beat_ms - previous.beat_ms
        grown = pod.completed - previous.completed
        if elapsed <= 0 or grown < 0:
            continue  # no new beat yet, or a restarted pod whose counter began again
        jobs += grown
        milliseconds += elapsed
    if milliseconds == 0:
        return None
    return jobs / (milliseconds / 1000)
