"""Fixture chains over real services: redis_server -> redis_url; kube_api -> namespace."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis
from arq.connections import ArqRedis, RedisSettings, create_pool
from kubernetes_asyncio.client import ApiClient, CoreV1Api, V1Namespace, V1ObjectMeta

import containerimages
from localcluster import ControlPlane
from tests.support.kube import REPO_ROOT, api_client, kubectl
from tests.support.operator_process import OperatorProcess, bind_operator_rbac
from tests.support.redis_server import RedisServer
from tests.support.worker_process import WorkerProcess


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh redis-server for this test alone (start-up is ~10 ms, so no sharing)."""
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
async def arq_pool(redis_url: str) -> AsyncIterator[ArqRedis]:
    """An arq client on the test's Redis, to enqueue real jobs."""
    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    yield pool
    await pool.aclose()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Any]:
    """A plain (sync) redis-py client on the test's Redis, to look at what was written."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def start_worker(redis_url: str) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory: start a worker subprocess (extra env as kwargs); every one is killed at the end."""
    started: list[WorkerProcess] = []

    def start(**env: str) -> WorkerProcess:
        worker = WorkerProcess(redis_url, env=env).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


# -- the local Kubernetes control plane ----------------------------------------------------


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + kube-controller-manager for the whole session.

    Started once (about 10-20 s); tests isolate themselves in namespaces of their own.
    """
    plane = ControlPlane(with_controller_manager=True)
    try:
        plane.start()
        yield plane
    finally:
        plane.cleanup()


@pytest.fixture(scope="session")
def kube_crds(control_plane: ControlPlane) -> ControlPlane:
    """The control plane with crds/ applied and the JobQueue CRD Established."""
    kubectl(control_plane, "apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
    kubectl(
        control_plane,
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/jobqueues.arqfleet.io",
    )
    return control_plane


@pytest.fixture
async def kube(kube_crds: ControlPlane) -> AsyncIterator[ApiClient]:
    """A kubernetes_asyncio client for the local apiserver (CRDs installed)."""
    api = await api_client(kube_crds)
    async with api:
        yield api


RESTRICTED_POD_SECURITY = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


@pytest.fixture
async def namespace(kube: ApiClient) -> AsyncIterator[str]:
    """A namespace of this test's own, deleted afterwards (the namespace controller empties it).

    It enforces Pod Security "restricted", as a careful cluster's namespaces do, so every pod
    the operator's Deployments create here must pass it to run at all."""
    core = CoreV1Api(kube)
    labels = {"arqfleet.io/test": "true", **RESTRICTED_POD_SECURITY}
    created = await core.create_namespace(
        V1Namespace(metadata=V1ObjectMeta(generate_name="t-", labels=labels))
    )
    name: str = created.metadata.name
    yield name
    await core.delete_namespace(name)


@pytest.fixture(scope="module")
def operator(kube_crds: ControlPlane) -> Iterator[OperatorProcess]:
    """A cluster-wide `arqfleet-operator` subprocess, restricted to the shipped RBAC.

    Module-scoped: modules that start operators of their own never run beside this one."""
    process = OperatorProcess(kube_crds, bind_operator_rbac(kube_crds))
    process.start()
    yield process
    assert process.stop() == 0, process.log()


@pytest.fixture(scope="session")
def images() -> dict[str, str]:
    """Image tags by name (operator, worker, example), built or found up to date.

    hack/build-images builds nothing when the images' content keys match (well under a
    second), and otherwise rebuilds what changed with podman's layer cache; a cold machine
    also makes the Debian Python base with mmdebstrap first (about 75 s in all here).
    """
    build = containerimages.REPO_ROOT / "hack" / "build-images"
    result = subprocess.run([str(build)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"hack/build-images failed ({result.returncode}):\n{result.stderr[-10_000:]}")
    return {name: image.tag for name, image in containerimages.images().items()}
