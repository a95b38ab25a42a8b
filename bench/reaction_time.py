"""How fast an idle queue at zero reacts to a burst: enqueue -> scale -> pod Ready -> job started.

    .venv/bin/python bench/reaction_time.py                  # 20 bursts at pollSeconds 1 and 5
    .venv/bin/python bench/reaction_time.py --bursts 5 --poll 1

On the local cluster with the real operator and real `arqfleet-worker` pods on a real node
(kubelet + containerd; the bench image, bench/Dockerfile, imported: pod start here is a
container start on a warm node, not an image pull).
Each burst (5 jobs of 0.5 s) comes at a random instant of the poll period, on a fleet at zero.
Measured from the enqueue, on this machine's clock: the Deployment's replicas leaving 0 (read
every 50 ms), the first worker pod Ready (the same), the first job's own start time.

Beside it, KEDA's defaults for the same signal, from the simulator's KEDA model
(`bench.sim.policies.KedaHpa`): a burst at a random instant waits for KEDA's next 30 s poll.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import redis
from arq.connections import RedisSettings, create_pool
from kubernetes_asyncio.client import ApiClient, AppsV1Api, CoreV1Api

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "hack")]

from tests.support.kube import api_client, merge_patch_jobqueue  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402

import containerimages  # noqa: E402
from arqfleet.worker.constants import cron_next_key  # noqa: E402
from bench.sim.cluster import simulate  # noqa: E402
from bench.sim.policies import keda_zcard  # noqa: E402
from bench.sim.traces import Job, Trace  # noqa: E402
from soak import NAME, NAMESPACE, bring_up, tear_down  # noqa: E402

BURST, JOB_SECONDS, SAMPLE = 5, 0.5, 0.05
TIMEOUT = 5.0  # per API call


def spec_of(redis_url: str) -> dict[str, Any]:
    return {
        "redis": {"url": redis_url},
        "worker": {
            "image": containerimages.images()["bench"].tag,
            "imagePullPolicy": "Never",  # imported into the node's containerd: no registry here
            "settings": "bench.timed_app.WorkerSettings",
            "jobTimeoutSeconds": 10,
            "drainSeconds": 10,
        },
        # A short window brings the fleet back to zero quickly between bursts.
        "scaling": {"pollSeconds": 1, "maxReplicas": 2, "scaleDown": {"stabilizationSeconds": 3}},
    }


@dataclass
class Reaction:
    scaled: float
    ready: float
    started: float


async def fleet_state(api: ApiClient) -> tuple[int, int, int]:
    """(Deployment replicas, live pods, Ready pods)."""
    deployment = await AppsV1Api(api).read_namespaced_deployment(
        f"{NAME}-worker", NAMESPACE, _request_timeout=TIMEOUT
    )
    pods = await CoreV1Api(api).list_namespaced_pod(NAMESPACE, _request_timeout=TIMEOUT)
    live = [p for p in pods.items if p.status.phase not in ("Succeeded", "Failed")]
    ready = [
        p
        for p in live
        if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]
    return int(deployment.spec.replicas or 0), len(live), len(ready)


async def at_zero(api: ApiClient, deadline: float) -> None:
    while time.monotonic() < deadline:
        replicas, live, _ = await fleet_state(api)
        if replicas == 0 and live == 0:
            return
        await asyncio.sleep(0.2)  # polling the API: there is no event to wait on here
    raise TimeoutError("the fleet did not return to zero")


async def one_burst(api: ApiClient, client: redis.Redis, url: str, poll: int, n: int) -> Reaction:
    await at_zero(api, time.monotonic() + 180)
    await asyncio.sleep(random.uniform(0, poll))  # a random instant of the operator's poll
    pool = await create_pool(RedisSettings.from_dsn(url))
    tags = [f"p{poll}-b{n}-{i}" for i in range(BURST)]
    enqueued = time.time()
    for tag in tags:
        await pool.enqueue_job("timed", tag, JOB_SECONDS, _job_id=tag)
    await pool.aclose()
    scaled = ready = started = None
    deadline = time.monotonic() + 120
    while None in (scaled, ready, started) and time.monotonic() < deadline:
        replicas, _, ready_pods = await fleet_state(api)
        now = time.time()
        if scaled is None and replicas > 0:
            scaled = now
        if ready is None and ready_pods > 0:
            ready = now
        if started is None:
            times = [
                t for t in cast(list[bytes | None], client.hmget("validate:started", tags)) if t
            ]
            if times:
                started = min(float(t) for t in times)
        await asyncio.sleep(SAMPLE)
    if scaled is None or ready is None or started is None:
        raise TimeoutError(f"burst {n} at pollSeconds {poll}: no reaction within 120 s")
    return Reaction(scaled - enqueued, ready - enqueued, started - enqueued)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def keda_scale_delays(samples: int = 1000) -> list[float]:
    """The simulator's KEDA + HPA model: a burst at a random instant, a fleet at zero; seconds
    until KEDA scales it from zero."""
    rng = random.Random(9)
    delays = []
    for _ in range(samples):
        at = rng.uniform(0, 60)
        trace = Trace("burst", tuple(Job(at, at, JOB_SECONDS) for _ in range(BURST)), 120.0)
        outcome = simulate(trace, keda_zcard(10, 2), max_jobs=10, start_seconds=0, tail_seconds=0)
        first = next(t for t, _, _, replicas in outcome.timeline if replicas > 0)
        delays.append(first - at)
    return delays


def report(poll: int, reactions: list[Reaction], keda: list[float]) -> bool:
    print(f"\npollSeconds {poll}: {len(reactions)} bursts")
    print(f"{'from the enqueue to':<24}{'p50':>8}{'p95':>8}{'max':>8}")
    for what, values in (
        ("replicas changed", [r.scaled for r in reactions]),
        ("first pod Ready", [r.ready for r in reactions]),
        ("first job started", [r.started for r in reactions]),
        ("KEDA defaults: scaled", keda),
    ):
        p50, p95 = quantile(values, 0.5), quantile(values, 0.95)
        print(f"{what:<24}{p50:>7.2f}s{p95:>7.2f}s{max(values):>7.2f}s")
    p95 = quantile([r.scaled for r in reactions], 0.95)
    ok = p95 <= poll + 0.5
    print(f"scale change p95 {p95:.2f}s (target <= {poll + 0.5:.1f}s): {'PASS' if ok else 'MISS'}")
    print(f"KEDA p95 / arqfleet p95 = {quantile(keda, 0.95) / p95:.1f}x")
    return ok


async def run(polls: list[int], bursts: int) -> int:
    keda = keda_scale_delays()
    with tempfile.TemporaryDirectory(prefix="arqfleet-reaction-") as workdir:
        cluster = await asyncio.to_thread(bring_up, Path(workdir), spec_of, "bench")
        client = redis.Redis.from_url(cluster.redis.url, socket_timeout=5)
        api = await api_client(cluster.plane)
        results: dict[int, list[Reaction]] = {}
        try:
            # At minReplicas 0 the operator wakes one worker to learn the cron schedule first.
            wait_for(
                lambda: bool(client.exists(cron_next_key("arq:queue"))),
                timeout=120,
                what="the app's cron schedule learnt",
            )
            for poll in polls:
                patch = {"spec": {"scaling": {"pollSeconds": poll}}}
                await merge_patch_jobqueue(api, NAMESPACE, NAME, patch)
                results[poll] = [
                    await one_burst(api, client, cluster.redis.url, poll, n) for n in range(bursts)
                ]
        finally:
            await api.close()
            client.close()
            await asyncio.to_thread(tear_down, cluster)
    passed = [report(poll, reactions, keda) for poll, reactions in results.items()]
    return 0 if all(passed) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bursts", type=int, default=20)
    parser.add_argument("--poll", default="1,5", help="pollSeconds values, comma-separated")
    args = parser.parse_args()
    return asyncio.run(run([int(p) for p in args.poll.split(",")], args.bursts))


if __name__ == "__main__":
    sys.exit(main())
