"""`make soak`: random load and random faults against the real operator and real workers, with
exact job accounting. Not part of `make test` (30 minutes by default; SOAK_MINUTES to change).

What runs: the local control plane (etcd, kube-apiserver, kube-controller-manager), a real node
(containerd + kubelet + kube-scheduler, hack/localnode.py) running the example image, a
persistent redis-server on the node's bridge, the operator (namespaced RBAC) and one JobQueue of
the example app, minReplicas 0. The node needs root.

Load: bursts of 1-200 `slow` jobs (0.05-3 s) at random intervals, with quiet spells so the
fleet also goes back to zero. Every job has its own id (`_job_id` = its tag), so an enqueue
retried after a Redis error cannot add a second copy.

Faults, one at a time at random intervals: a worker container SIGKILLed mid-job, a worker pod
deleted (drained), Redis stopped for 5-30 s and restarted with its data, the operator SIGKILLed
and restarted, the kube-apiserver restarted. While Redis is down the replicas must not drop
(a probe that fails holds them): every sample that shows a drop is a violation.

At the end the load stops, every job must be done within the deadline, and it prints, per run
and per fault kind: jobs enqueued, completed, duplicated (done more than once: arq's
at-least-once after a SIGKILL between the job's work and its bookkeeping) and lost, plus the
jobs re-run after a SIGKILL. Exit 1 on any lost job or violation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import redis
from arq.connections import ArqRedis, RedisSettings, create_pool
from redis.exceptions import RedisError

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "hack")]

from tests.support.jobqueues import jobqueue  # noqa: E402
from tests.support.kube import kubectl  # noqa: E402
from tests.support.operator_process import OperatorProcess, bind_operator_rbac  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402

import containerimages  # noqa: E402
from arqfleet.worker.constants import dlq_index_key  # noqa: E402
from localcluster import ControlPlane  # noqa: E402
from localnode import Node  # noqa: E402

NAMESPACE = "soak"
NAME = "soak"
QUEUE = "arq:queue"  # arq's default, which the example app keeps
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


@dataclass
class Cluster:
    plane: ControlPlane
    node: Node
    redis: RedisServer
    operator: OperatorProcess


@dataclass
class Ledger:
    """What was enqueued and what happened, for the accounting at the end."""

    enqueued: list[str] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    redis_down: bool = False
    requeued: set[str] = field(default_factory=set)  # dead letters requeued at the end


def spec(redis_url: str) -> dict[str, Any]:
    return {
        "redis": {"url": redis_url},
        "worker": {
            "image": containerimages.images()["example"].tag,
            "imagePullPolicy": "Never",  # imported into the node's containerd: no registry here
            "settings": "examples.app.worker.WorkerSettings",
            "jobTimeoutSeconds": 30,  # arq's in-progress TTL: 40 s after a SIGKILL
            "drainSeconds": 30,
            "env": [{"name": "EXAMPLE_CRON_EVERY_SECONDS", "value": "0"}],
        },
        "scaling": {"maxReplicas": 6, "pollSeconds": 2, "scaleDown": {"stabilizationSeconds": 20}},
    }


def build_images() -> None:
    """hack/build-images: nothing to do when the images are up to date."""
    built = subprocess.run(
        [str(REPO / "hack" / "build-images")], capture_output=True, text=True, check=False
    )
    if built.returncode != 0:
        raise RuntimeError(f"hack/build-images failed:\n{built.stderr[-4000:]}")


def bring_up(
    workdir: Path, spec_of: Callable[[str], dict[str, Any]] = spec, image: str = "example"
) -> Cluster:
    """Control plane, a node with `image` (a hack/build-images name) imported, Redis on the
    node's bridge, operator and the JobQueue `spec_of(redis_url)`."""
    build_images()
    plane = ControlPlane(with_controller_manager=True)
    node = Node(plane, workdir=workdir / "node")
    cluster = Cluster(
        plane, node, RedisServer(persistent=True), OperatorProcess(plane, Path(), [NAMESPACE])
    )
    try:
        plane.start()
        node.start()
        node.load_image(containerimages.images()[image].tag)
        cluster.redis.bind = node.gateway  # where the pods reach the host
        kubectl(plane, "apply", "--server-side", "-f", str(REPO / "crds"))
        kubectl(
            plane,
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/jobqueues.arqfleet.io",
        )
        namespace = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": NAMESPACE, "labels": RESTRICTED},
        }
        kubectl(plane, "apply", "-f", "-", stdin=json.dumps(namespace))
        cluster.redis.start()
        cluster.operator.kubeconfig = bind_operator_rbac(
            plane, [NAMESPACE], user="arqfleet-op-soak"
        )
        cluster.operator.start()
        body = json.dumps(jobqueue(NAME, spec_of(cluster.redis.url)))
        kubectl(plane, "-n", NAMESPACE, "apply", "-f", "-", stdin=body)
    except BaseException:
        tear_down(cluster)  # nothing of a failed bring-up keeps running
        raise
    return cluster


def tear_down(cluster: Cluster) -> None:
    for step in (
        cluster.operator.stop,
        cluster.node.stop,
        cluster.redis.cleanup,
        cluster.plane.cleanup,
    ):
        try:
            step()
        except Exception as exc:  # one part failing to stop must not leave the others running
            print(f"teardown: {step.__qualname__}: {exc}", file=sys.stderr)


def replicas(cluster: Cluster) -> int | None:
    got = kubectl(
        cluster.plane,
        "-n",
        NAMESPACE,
        "get",
        "deployment",
        f"{NAME}-worker",
        "-o",
        "jsonpath={.spec.replicas}",
        check=False,
    )
    return int(got.stdout) if got.returncode == 0 and got.stdout.strip() else None


async def enqueue(pool: ArqRedis, tag: str, seconds: float, deadline: float) -> bool:
    """Enqueue until Redis takes it or the deadline passes (it may be down for a fault)."""
    while time.monotonic() < deadline:
        try:
            await pool.enqueue_job("slow", tag, seconds=seconds, _job_id=tag)
            return True
        except (TimeoutError, RedisError, OSError):
            await asyncio.sleep(1)  # Redis is down: retry at a human pace
    return False


async def load(ledger: Ledger, url: str, until: float, rng: random.Random) -> None:
    pool = await create_pool(RedisSettings.from_dsn(url))
    counter = 0
    try:
        while time.monotonic() < until:
            burst = rng.choice([1, 5, 20, 50, 200])
            for _ in range(burst):
                counter += 1
                tag = f"s{counter}"
                if await enqueue(pool, tag, round(rng.uniform(0.05, 3.0), 2), until + 120):
                    ledger.enqueued.append(tag)
            await asyncio.sleep(rng.choice([1, 5, 15, 45, 90]))  # the load's own rhythm
    finally:
        await pool.aclose()


def _kill_a_worker(cluster: Cluster, rng: random.Random) -> str:
    live = cluster.node.container_pids(b"arqfleet-worker")
    if not live:
        return "no worker running: skipped"
    pid = rng.choice(live)
    os.kill(pid, signal.SIGKILL)  # the kubelet restarts the container
    return f"SIGKILL worker pid {pid}"


def _delete_a_pod(cluster: Cluster, rng: random.Random) -> str:
    got = kubectl(cluster.plane, "-n", NAMESPACE, "get", "pods", "-o", "name", check=False)
    pods = got.stdout.split()
    if not pods:
        return "no pod: skipped"
    pod = rng.choice(pods)
    kubectl(cluster.plane, "-n", NAMESPACE, "delete", pod, "--wait=false")
    return f"deleted {pod} (drain)"


async def _redis_outage(cluster: Cluster, ledger: Ledger, rng: random.Random) -> str:
    before = replicas(cluster)
    seconds = rng.uniform(5, 30)
    cluster.redis.stop()
    ledger.redis_down = True
    outage_end = time.monotonic() + seconds
    while time.monotonic() < outage_end:
        now = replicas(cluster)
        if before is not None and now is not None and now < before:
            ledger.violations.append(f"replicas {before} -> {now} while Redis was down")
        await asyncio.sleep(1)  # the outage's length is the fault itself, not a wait
    cluster.redis.start()
    ledger.redis_down = False
    return f"Redis down {seconds:.0f}s (replicas {before})"


def _kill_the_operator(cluster: Cluster) -> str:
    assert cluster.operator.popen is not None
    cluster.operator.popen.kill()
    cluster.operator.popen.wait(timeout=10)
    cluster.operator.start()
    return "SIGKILL operator, restarted"


def _restart_apiserver(cluster: Cluster) -> str:
    cluster.plane.restart_apiserver()
    return "kube-apiserver restarted"


async def faults(cluster: Cluster, ledger: Ledger, until: float, rng: random.Random) -> None:
    kinds: dict[str, Callable[[], Awaitable[str]]] = {
        "worker SIGKILL": lambda: asyncio.to_thread(_kill_a_worker, cluster, rng),
        "pod deleted": lambda: asyncio.to_thread(_delete_a_pod, cluster, rng),
        "Redis outage": lambda: _redis_outage(cluster, ledger, rng),
        "operator SIGKILL": lambda: asyncio.to_thread(_kill_the_operator, cluster),
        "apiserver restart": lambda: asyncio.to_thread(_restart_apiserver, cluster),
    }
    began = time.monotonic()
    while time.monotonic() < until:
        await asyncio.sleep(rng.uniform(30, 90))  # the faults' own rhythm
        if time.monotonic() >= until:
            return
        kind = rng.choice(list(kinds))
        try:
            what = await kinds[kind]()
        except Exception as exc:  # a fault that fails to happen is reported, not fatal
            what = f"failed: {exc!r}"
        ledger.faults[kind] += 1
        print(f"[{time.monotonic() - began:6.0f}s] {kind}: {what}", flush=True)


def records(client: redis.Redis, what: str) -> Counter[str]:
    """The tags the example app's jobs recorded under example:<what>."""
    raw = cast(list[bytes], client.lrange(f"example:{what}", 0, -1))
    return Counter(item.decode() for item in raw)


def dead_letters(client: redis.Redis) -> set[str]:
    """Job ids in the queue's dead-letter index (ours are the tags: `_job_id` = tag)."""
    raw = cast(list[bytes], client.zrange(dlq_index_key(QUEUE), 0, -1))
    return {item.decode() for item in raw}


def requeue_dead_letters(redis_url: str) -> str:
    """What a person does with dead letters once the cause is gone: the real CLI."""
    argv = [
        str(Path(sys.executable).parent / "arqfleet"),
        "dlq",
        "requeue",
        "--all",
        "--redis",
        redis_url,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    return (done.stdout + done.stderr).strip()


def account(client: redis.Redis, ledger: Ledger) -> dict[str, int]:
    done, started = records(client, "done"), records(client, "started")
    enqueued = set(ledger.enqueued)
    return {
        "enqueued": len(enqueued),
        "dead-lettered then requeued": len(ledger.requeued),
        "completed": sum(1 for tag in enqueued if done[tag] >= 1),
        "duplicated": sum(1 for tag in enqueued if done[tag] > 1),
        "lost": sum(1 for tag in enqueued if done[tag] == 0),
        "re-run": sum(1 for tag in enqueued if started[tag] > 1),
    }


async def soak(minutes: float, seed: int, workdir: Path) -> int:
    rng = random.Random(seed)
    cluster = await asyncio.to_thread(bring_up, workdir)
    client = redis.Redis.from_url(cluster.redis.url, socket_timeout=5)
    ledger = Ledger()
    began = time.monotonic()
    try:
        until = began + minutes * 60
        await asyncio.gather(
            load(ledger, cluster.redis.url, until, rng),
            faults(cluster, ledger, until, rng),
        )
        print(
            f"load and faults over after {time.monotonic() - began:.0f}s; waiting for every job",
            flush=True,
        )
        wanted = set(ledger.enqueued)

        def all_done() -> bool:
            return wanted <= set(records(client, "done"))

        def settled() -> bool:  # done, or failed for good and kept as a dead letter
            return wanted <= set(records(client, "done")) | dead_letters(client)

        try:
            wait_for(settled, timeout=600, interval=2, what="every job done or dead-lettered")
            # A job whose own Redis calls failed during an outage fails (the example app does
            # not retry that) and is kept in the dead-letter queue: requeue it, as a person
            # would, and it must then complete.
            ledger.requeued = (wanted - set(records(client, "done"))) & dead_letters(client)
            if ledger.requeued:
                print(f"dead letters {sorted(ledger.requeued)}: requeueing", flush=True)
                print(requeue_dead_letters(cluster.redis.url), flush=True)
            wait_for(all_done, timeout=300, interval=2, what="every enqueued job done")
        except Exception as exc:
            print(f"not every job finished: {exc}", flush=True)
        wait_for(
            lambda: replicas(cluster) == 0, timeout=300, interval=2, what="the fleet back at zero"
        )
        figures = account(client, ledger)
    finally:
        client.close()
        await asyncio.to_thread(tear_down, cluster)
    print(f"\nsoak: {minutes:g} min, seed {seed}, {time.monotonic() - began:.0f}s in all")
    print("faults: " + ", ".join(f"{kind} x{n}" for kind, n in sorted(ledger.faults.items())))
    print("jobs:   " + ", ".join(f"{key} {value}" for key, value in figures.items()))
    for violation in ledger.violations:
        print(f"VIOLATION: {violation}")
    ok = figures["lost"] == 0 and not ledger.violations
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "30"))
    )
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SOAK_SEED", "1")))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="arqfleet-soak-") as workdir:
        return asyncio.run(soak(args.minutes, args.seed, Path(workdir)))


if __name__ == "__main__":
    sys.exit(main())
