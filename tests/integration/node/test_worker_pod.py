"""The worker pod exactly as the operator renders it, from the image our Dockerfiles build, on
a real kubelet: the image, the restricted security context, the resources in its cgroup, the
kubelet's own probes and SIGTERM."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from arq.connections import RedisSettings, create_pool
from arq.jobs import JobStatus

from arqfleet.operator import workload
from arqfleet.operator.models import JobQueueSpec
from localcluster import ControlPlane
from localnode import Node
from tests.support.kube import kubectl
from tests.support.node_pods import wait_phase
from tests.support.redis_server import RedisServer
from tests.support.waiting import async_wait_for, wait_for

DRAIN_SECONDS = 10
EXAMPLE_SETTINGS = "examples.app.worker.WorkerSettings"


@pytest.fixture
def gateway_redis(node: Node) -> Iterator[RedisServer]:
    """A real redis-server where the node's pods reach the host: the bridge gateway."""
    server = RedisServer(bind=node.gateway)
    server.start()
    yield server
    server.cleanup()


def worker_pod(node: Node, image: str, redis_url: str) -> dict[str, Any]:
    spec = JobQueueSpec.model_validate(
        {
            "redis": {"url": redis_url},
            "worker": {
                "image": image,
                "imagePullPolicy": "Never",  # imported, as no registry answers here
                "settings": EXAMPLE_SETTINGS,
                "drainSeconds": DRAIN_SECONDS,
                "jobTimeoutSeconds": DRAIN_SECONDS,
                "env": [{"name": "EXAMPLE_CRON_EVERY_SECONDS", "value": "0"}],
                "resources": {
                    "requests": {"cpu": "100m", "memory": "128Mi"},
                    "limits": {"cpu": "500m", "memory": "256Mi"},
                },
            },
        }
    )
    template = workload.pod_template(workload.JobQueueRef("real", "default", "uid-real"), spec)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "real-worker", "namespace": "default", **template["metadata"]},
        "spec": {**template["spec"], "nodeSelector": {"kubernetes.io/hostname": node.name}},
    }


def worker_pid(node: Node) -> int:
    """The worker's PID 1 (arqfleet-worker) among the node's processes."""
    [pid] = node.container_pids(b"arqfleet-worker")
    return pid


def process_uids(pid: int) -> list[str]:
    """Real, effective, saved and filesystem UIDs of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return line.split()[1:]
    raise AssertionError(f"no Uid line for {pid}")


def cgroup_file(pid: int, controller: str, name: str) -> str:
    """A cgroup v1 file of the process's cgroup for `controller` (these machines' hierarchy)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return Path(f"/sys/fs/cgroup/{controller}{path}/{name}").read_text().strip()
    raise AssertionError(f"{pid} has no {controller} cgroup")


def mount_options(pid: int) -> dict[str, set[str]]:
    """Mount point -> its per-mount options, as the container sees them."""
    options: dict[str, set[str]] = {}
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        options[fields[4]] = set(fields[5].split(","))
    return options


async def test_the_rendered_worker_pod_runs_restricted_and_drains_on_the_real_kubelet(
    node_plane: ControlPlane, node: Node, images: dict[str, str], gateway_redis: RedisServer
) -> None:
    image = images["example"]
    began = time.monotonic()
    await asyncio.to_thread(node.load_image, image)
    imported = time.monotonic()
    manifest = worker_pod(node, image, gateway_redis.url)
    kubectl(node_plane, "create", "-f", "-", stdin=json.dumps(manifest))
    # Running and Ready: the kubelet's own HTTP readiness probe reached /readyz on the pod IP.
    running = await asyncio.to_thread(wait_phase, node_plane, "real-worker", "Running", 90)
    print(
        f"\nimage import {imported - began:.1f}s, pod created to Ready "
        f"{time.monotonic() - imported:.1f}s"
    )
    [status] = running["status"]["containerStatuses"]
    assert status["image"].endswith(image.split("/", 1)[1]), status

    # The restricted context, enforced by runc: the image's numeric user (Dockerfile.worker's
    # USER 10001), a read-only root, a writable /tmp (the emptyDir).
    pid = worker_pid(node)
    uids = process_uids(pid)
    assert set(uids) == {"10001"}, uids
    mounts = mount_options(pid)
    assert "ro" in mounts["/"], mounts["/"]
    assert "rw" in mounts["/tmp"], mounts["/tmp"]
    # worker.resources reach the container's cgroup: the kernel enforces them, not a field.
    assert cgroup_file(pid, "memory", "memory.limit_in_bytes") == str(256 * 2**20)
    assert cgroup_file(pid, "cpu", "cpu.cfs_quota_us") == str(
        int(cgroup_file(pid, "cpu", "cpu.cfs_period_us")) // 2
    )

    pool = await create_pool(RedisSettings.from_dsn(gateway_redis.url))
    client = aioredis.Redis.from_url(gateway_redis.url)
    try:
        job = await pool.enqueue_job("slow", "on-the-node", seconds=3)
        assert job is not None

        async def started() -> bool:
            return bool(await client.lrange("example:started", 0, -1))

        await async_wait_for(started, timeout=30, what="the job to start in the pod")
        assert await client.lrange("example:done", 0, -1) == []  # SIGTERM comes mid-job
        # Deleting the pod: the kubelet sends SIGTERM, the worker finishes the job and exits.
        kubectl(node_plane, "-n", "default", "delete", "pod", "real-worker", "--wait=false")

        def gone() -> bool:
            found = kubectl(node_plane, "-n", "default", "get", "pod", "real-worker", check=False)
            return found.returncode != 0 and "NotFound" in found.stderr

        deleted = time.monotonic()
        await asyncio.to_thread(
            wait_for, gone, timeout=DRAIN_SECONDS + 20, interval=0.2, what="the pod to go"
        )
        # Drained, not killed: gone well before the grace period (drain + 15 s) ends.
        assert time.monotonic() - deleted < DRAIN_SECONDS + 15
        assert await client.lrange("example:done", 0, -1) == [b"on-the-node"]
        assert await job.status() == JobStatus.complete
    finally:
        await pool.aclose()
        await client.aclose()
