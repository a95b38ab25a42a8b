"""Seeded workload traces: when each job is enqueued, when it comes due, how long it runs.

A trace is stored as its generator and seed (a few lines here), not as data: the same seed gives
the same jobs on every machine, so every figure in RESULTS.md can be reproduced exactly.

The shapes are the ones our users' queues show (../shared/seeds/): a steady stream, a day's
cycle compressed into two hours, idle queues hit by bursts (a nightly import, a fan-out), a
stream with spikes and a long tail of slow jobs, and a queue of reminders enqueued with arq's
`_defer_by` that come due over the following hour and a half.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Job:
    enqueued: float  # seconds from the trace's start
    due: float  # >= enqueued; later for a deferred job
    duration: float  # seconds a worker slot is busy with it


@dataclass(frozen=True)
class Trace:
    name: str
    jobs: tuple[Job, ...]  # sorted by enqueue time
    seconds: float  # how long arrivals go on


def _poisson_times(
    rng: random.Random, rate: Callable[[float], float], peak: float, end: float
) -> list[float]:
    """Arrival times of a Poisson process of time-varying `rate` <= `peak` (by thinning)."""
    times: list[float] = []
    t = 0.0
    while True:
        t += rng.expovariate(peak)
        if t >= end:
            return times
        if rng.random() * peak <= rate(t):
            times.append(t)


def _lognormal(rng: random.Random, median: float, sigma: float) -> float:
    return rng.lognormvariate(math.log(median), sigma)


def steady(rng: random.Random) -> Trace:
    """4 jobs/s around the clock, ~4 s median jobs: about 2 pods of 10 slots busy."""
    end = 3600.0
    times = _poisson_times(rng, lambda _: 4.0, 4.0, end)
    jobs = [Job(t, t, _lognormal(rng, 4.0, 0.5)) for t in times]
    return Trace("steady", tuple(jobs), end)


def diurnal(rng: random.Random) -> Trace:
    """A day compressed into two hours: a quiet night, a morning ramp, a peak of ~12 jobs/s."""
    end = 7200.0

    def rate(t: float) -> float:
        return 0.2 + 12.0 * math.sin(math.pi * t / end) ** 2

    times = _poisson_times(rng, rate, 12.2, end)
    jobs = [Job(t, t, _lognormal(rng, 3.0, 0.6)) for t in times]
    return Trace("diurnal", tuple(jobs), end)


def bursty(rng: random.Random) -> Trace:
    """An idle queue (a job a minute) hit every 8-15 minutes by a burst of 150-500 jobs enqueued
    within ten seconds: an import, a fan-out, a webhook storm."""
    end = 5400.0
    trickle = _poisson_times(rng, lambda _: 1 / 60, 1 / 60, end)
    jobs = [Job(t, t, rng.uniform(1.0, 5.0)) for t in trickle]
    start = rng.uniform(60.0, 300.0)
    while start < end - 60:
        for _ in range(rng.randint(150, 500)):
            t = start + rng.uniform(0.0, 10.0)
            jobs.append(Job(t, t, rng.uniform(1.0, 5.0)))
        start += rng.uniform(480.0, 900.0)
    jobs.sort(key=lambda job: job.enqueued)
    return Trace("bursty", tuple(jobs), end)


def spiky_long_tail(rng: random.Random) -> Trace:
    """1 job/s of mostly quick jobs with a Pareto tail (a few run for minutes), plus spikes of
    50-200 jobs every few minutes."""
    end = 5400.0

    def duration() -> float:
        return min(1.0 * rng.paretovariate(1.3), 600.0)

    jobs = [Job(t, t, duration()) for t in _poisson_times(rng, lambda _: 1.0, 1.0, end)]
    start = rng.uniform(30.0, 240.0)
    while start < end:
        for _ in range(rng.randint(50, 200)):
            t = start + rng.uniform(0.0, 3.0)
            jobs.append(Job(t, t, duration()))
        start += rng.uniform(120.0, 600.0)
    jobs.sort(key=lambda job: job.enqueued)
    return Trace("spiky-long-tail", tuple(jobs), end)


def deferred(rng: random.Random) -> Trace:
    """Reminders: 4,000 jobs enqueued in the first ten minutes with `_defer_by` of 1-90 minutes
    (short sends when due), beside a trickle of immediate jobs."""
    end = 5400.0
    jobs = []
    for t in _poisson_times(rng, lambda _: 4000 / 600, 4000 / 600, 600.0):
        jobs.append(Job(t, t + rng.uniform(60.0, 5400.0), rng.uniform(0.5, 2.0)))
    trickle = _poisson_times(rng, lambda _: 0.05, 0.05, end)
    jobs += [Job(t, t, rng.uniform(0.5, 2.0)) for t in trickle]
    jobs.sort(key=lambda job: job.enqueued)
    return Trace("deferred", tuple(jobs), end)


GENERATORS: dict[str, Callable[[random.Random], Trace]] = {
    "steady": steady,
    "diurnal": diurnal,
    "bursty": bursty,
    "spiky-long-tail": spiky_long_tail,
    "deferred": deferred,
}


def make(name: str, seed: int = 1) -> Trace:
    return GENERATORS[name](random.Random(f"{name}:{seed}"))
