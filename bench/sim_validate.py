"""Check the simulator against the real thing once: replay a short trace on the local cluster
(real operator, real `arqfleet-worker` pods on a real node, real Redis) and compare
replica-seconds and job waits with what `bench.sim` predicts for arqfleet's policy on the same
trace.

    .venv/bin/python bench/sim_validate.py        # ~10 minutes

The simulator is fed the pod start latency measured in this run (creation to Ready, median),
the same JobQueue settings (CRD defaults, maxReplicas 6, maxJobs 10) and the same end time.
What it leaves out shows up as the error: the probe's and the API's latency, worker start
variance, Redis and arq overhead per job, the kubelet's pod bookkeeping.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import redis
from arq.connections import RedisSettings, create_pool

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "hack")]

from tests.support.kube import kubectl  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402

import containerimages  # noqa: E402
from arqfleet.operator.models import ScalingSpec  # noqa: E402
from arqfleet.worker.constants import cron_next_key  # noqa: E402
from bench.sim.cluster import simulate  # noqa: E402
from bench.sim.policies import Arqfleet  # noqa: E402
from bench.sim.traces import Job, Trace  # noqa: E402
from soak import NAMESPACE, Cluster, bring_up, replicas, tear_down  # noqa: E402

MAX_REPLICAS, MAX_JOBS = 6, 10
TAIL_SECONDS = 150.0  # after the last arrival: the 60 s window, drains, the way back to zero


def short_trace(seed: int = 1) -> Trace:
    """Seven minutes: a job every ~30 s, and two bursts of 80 jobs (1-5 s) within 5 s."""
    rng = random.Random(f"validate:{seed}")
    end = 420.0
    jobs = [Job(float(t), float(t), rng.uniform(1.0, 5.0)) for t in range(10, int(end), 30)]
    for start in (20.0, 230.0):
        for _ in range(80):
            t = start + rng.uniform(0.0, 5.0)
            jobs.append(Job(t, t, rng.uniform(1.0, 5.0)))
    jobs.sort(key=lambda job: job.enqueued)
    return Trace("validate", tuple(jobs), end)


def spec_of(redis_url: str) -> dict[str, Any]:
    return {
        "redis": {"url": redis_url},
        "worker": {
            "image": containerimages.images()["bench"].tag,
            "imagePullPolicy": "Never",  # imported into the node's containerd: no registry here
            "settings": "bench.timed_app.WorkerSettings",
            "maxJobs": MAX_JOBS,
            "jobTimeoutSeconds": 30,
            "drainSeconds": 30,
        },
        "scaling": {"maxReplicas": MAX_REPLICAS},  # every other field at the CRD's default
    }


@dataclass
class Samples:
    pods: list[tuple[float, int]] = field(default_factory=list)  # (t, live pods)
    replicas: list[tuple[float, int]] = field(default_factory=list)
    ready_latency: dict[str, float] = field(default_factory=dict)  # pod -> creation to Ready


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def sample(cluster: Cluster, t0: float, samples: Samples) -> None:
    got = kubectl(cluster.plane, "-n", NAMESPACE, "get", "pods", "-o", "json", check=False)
    if got.returncode != 0:
        return  # one failed sample is a gap, not a failure of the run
    now = time.time() - t0
    live = 0
    for pod in json.loads(got.stdout)["items"]:
        if pod["status"].get("phase") in ("Succeeded", "Failed"):
            continue
        live += 1
        for condition in pod["status"].get("conditions", []):
            if condition["type"] == "Ready" and condition["status"] == "True":
                created = _stamp(pod["metadata"]["creationTimestamp"])
                ready = _stamp(condition["lastTransitionTime"])
                samples.ready_latency.setdefault(pod["metadata"]["name"], ready - created)
    samples.pods.append((now, live))
    count = replicas(cluster)
    if count is not None:
        samples.replicas.append((now, count))


async def sampler(cluster: Cluster, t0: float, until: float, samples: Samples) -> None:
    while time.time() < until:
        await asyncio.to_thread(sample, cluster, t0, samples)
        await asyncio.sleep(0.5)  # the sampling period


async def replay(trace: Trace, url: str, t0: float, enqueued: dict[str, float]) -> None:
    pool = await create_pool(RedisSettings.from_dsn(url))
    try:
        for i, job in enumerate(trace.jobs):
            await asyncio.sleep(max(0.0, t0 + job.enqueued - time.time()))  # the trace's timing
            tag = f"v{i}"
            await pool.enqueue_job("timed", tag, round(job.duration, 3), _job_id=tag)
            enqueued[tag] = time.time()
    finally:
        await pool.aclose()


def integral(points: list[tuple[float, int]], end: float) -> float:
    total = 0.0
    for (t, value), (t_next, _) in zip(points, [*points[1:], (end, 0)], strict=True):
        total += value * (min(t_next, end) - t)
    return total


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run() -> int:
    trace = short_trace()
    with tempfile.TemporaryDirectory(prefix="arqfleet-validate-") as workdir:
        cluster = await asyncio.to_thread(bring_up, Path(workdir), spec_of, "bench")
        client = redis.Redis.from_url(cluster.redis.url, socket_timeout=5)
        try:
            # At minReplicas 0 the operator wakes one worker to learn the app's cron schedule;
            # start from an idle fleet at zero after that, as a queue in production would be.
            wait_for(
                lambda: client.exists(cron_next_key("arq:queue")) and replicas(cluster) == 0,
                timeout=300,
                interval=1,
                what="the fleet at zero after learning the cron schedule",
            )
            t0 = time.time()
            end = trace.seconds + TAIL_SECONDS
            samples, enqueued = Samples(), dict[str, float]()
            await asyncio.gather(
                sampler(cluster, t0, t0 + end, samples),
                replay(trace, cluster.redis.url, t0, enqueued),
            )
            started = {
                key.decode(): float(value)
                for key, value in cast(
                    dict[bytes, bytes], client.hgetall("validate:started")
                ).items()
            }
        finally:
            client.close()
            await asyncio.to_thread(tear_down, cluster)
    return report(trace, samples, enqueued, started, end)


def report(
    trace: Trace,
    samples: Samples,
    enqueued: dict[str, float],
    started: dict[str, float],
    end: float,
) -> int:
    waits = [started[tag] - at for tag, at in enqueued.items() if tag in started]
    real_rs = integral(samples.pods, end)
    counts = [count for _, count in samples.replicas]
    real_scales = sum(1 for a, b in itertools.pairwise(counts) if a != b)
    start_latency = statistics.median(samples.ready_latency.values())
    policy = Arqfleet(ScalingSpec(max_replicas=MAX_REPLICAS), jobs_per_replica=MAX_JOBS)
    sim = simulate(
        trace, policy, max_jobs=MAX_JOBS, start_seconds=start_latency, tail_seconds=TAIL_SECONDS
    )
    print(f"trace: {len(trace.jobs)} jobs over {trace.seconds:.0f}s, then {TAIL_SECONDS:.0f}s")
    print(f"jobs started: {len(waits)} of {len(trace.jobs)}")
    print(
        f"pod start (creation to Ready), median of {len(samples.ready_latency)} pods: "
        f"{start_latency:.1f}s (fed to the simulator)"
    )
    rows = [
        ("replica-seconds", real_rs, sim.replica_seconds),
        ("p50 wait (s)", quantile(waits, 0.5), quantile(sim.waits, 0.5)),
        ("p95 wait (s)", quantile(waits, 0.95), quantile(sim.waits, 0.95)),
        ("max wait (s)", max(waits), max(sim.waits)),
        ("scale events", float(real_scales), float(sim.scale_events)),
    ]
    print(f"{'':18}{'real':>10}{'simulated':>11}{'error':>9}")
    for what, real, simulated in rows:
        error = (simulated - real) / real if real else float("nan")
        print(f"{what:18}{real:>10.1f}{simulated:>11.1f}{error:>+9.0%}")
    return 0 if len(waits) == len(trace.jobs) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(run()))
