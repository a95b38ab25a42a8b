"""Operators of the tests' own: namespaced mode, restarts, 50 JobQueues, and RBAC audited.

Each test starts its own namespaced operator as its own user, so none shares state with
another (the cluster-wide operator of test_reconcile.py is module-scoped and gone by now).
"""

from __future__ import annotations

import copy
import functools
import json
import os
import signal
import statistics
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from arq.connections import RedisSettings, create_pool
from kubernetes_asyncio.client import ApiClient, AppsV1Api, CoreV1Api, V1ObjectMeta, V1Secret

from arqfleet.operator import rbac
from localcluster import ControlPlane
from tests.support.kube import kubectl, merge_patch_jobqueue
from tests.support.monitoring_crds import crd_file
from tests.support.operator_checks import (
    create_jobqueue,
    get_deployment,
    get_jobqueue,
    get_path,
    ready_condition,
)
from tests.support.operator_process import (
    OperatorProcess,
    audited_calls,
    bind_operator_rbac,
    reconcile_durations_ms,
)
from tests.support.redis_server import RedisServer
from tests.support.waiting import async_wait_for, wait_for

pytestmark = pytest.mark.cluster


def plain_spec(**worker: Any) -> dict[str, Any]:
    return {
        "redis": {"url": "redis://redis:6379/0"},
        "worker": {"image": "app:1", "settings": "app.worker.WorkerSettings", **worker},
    }


@pytest.fixture
def operator_env() -> dict[str, str]:
    """Extra environment for `namespaced_operator` (a test may override this fixture)."""
    return {}


@pytest.fixture
def namespaced_operator(
    kube_crds: ControlPlane,
    namespace: str,
    request: pytest.FixtureRequest,
    operator_env: dict[str, str],
) -> Iterator[OperatorProcess]:
    user = f"arqfleet-op-{request.node.name[:40].replace('_', '-').lower()}"
    kubeconfig = bind_operator_rbac(kube_crds, [namespace], user=user)
    process = OperatorProcess(kube_crds, kubeconfig, namespaces=[namespace], env=operator_env)
    process.start()
    yield process
    assert process.stop() == 0, process.log()


def arqfleet_writes(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        entry
        for entry in deployment["metadata"]["managedFields"]
        if entry["manager"].startswith("arqfleet")
    ]


async def wait_replicas(
    kube: ApiClient, namespace: str, wanted: Callable[[int], bool], what: str, name: str = "q"
) -> int:
    async def replicas() -> int | None:
        dep = await get_deployment(kube, namespace, f"{name}-worker")
        count = None if dep is None else int(dep["spec"]["replicas"])
        return count if count is not None and wanted(count) else None

    found: int = await async_wait_for(replicas, timeout=30, what=what)
    return found


async def wait_reconciled(kube: ApiClient, namespace: str, name: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        condition = await ready_condition(kube, namespace, name)
        jq = await get_jobqueue(kube, namespace, name)
        if condition is None or jq is None:
            return None
        observed = jq["status"].get("observedGeneration")
        return jq if observed == jq["metadata"]["generation"] else None

    return await async_wait_for(done, timeout=60, what=f"{name} reconciled")


async def test_restart_changes_nothing_that_was_right(
    kube: ApiClient, namespace: str, namespaced_operator: OperatorProcess
) -> None:
    await create_jobqueue(kube, namespace, "q", plain_spec())
    before_jq = await wait_reconciled(kube, namespace, "q")
    before = await get_deployment(kube, namespace, "q-worker")
    assert before is not None
    assert namespaced_operator.stop() == 0

    namespaced_operator.start()
    wait_for(
        lambda: f"reconciled {namespace}/q (resume)" in namespaced_operator.log(),
        timeout=60,
        what="the resumed operator to reconcile q",
    )
    after = await get_deployment(kube, namespace, "q-worker")
    after_jq = await get_jobqueue(kube, namespace, "q")
    assert after is not None
    assert after_jq is not None
    # The controller manager may still be writing the Deployment's status, so compare what
    # arqfleet wrote: its managedFields entries carry the time of its last real change.
    assert arqfleet_writes(after) == arqfleet_writes(before)
    assert after_jq["status"] == before_jq["status"]


@pytest.mark.parametrize(
    "operator_env",
    # The operator's own defaults: discovery answers are cached, as in production.
    [{"ARQFLEET_DISCOVERY_CACHE_SECONDS": "60", "ARQFLEET_QUEUE_STATUS_SECONDS": "15"}],
    ids=["default-caching"],
)
async def test_fifty_jobqueues_are_reconciled(
    kube: ApiClient, namespace: str, namespaced_operator: OperatorProcess, redis_url: str
) -> None:
    names = [f"q{i:02d}" for i in range(50)]
    for name in names:
        spec = plain_spec()
        spec["redis"] = {"url": redis_url}  # a real Redis, as the fleet would have
        await create_jobqueue(kube, namespace, name, spec)

    async def all_ready() -> bool:
        listed = await AppsV1Api(kube).list_namespaced_deployment(namespace)
        if len(listed.items) < len(names):
            return False
        for name in names:
            condition = await ready_condition(kube, namespace, name)
            if condition is None:
                return False
        return True

    assert await async_wait_for(all_ready, timeout=180, interval=0.5, what="50 reconciled")
    durations = reconcile_durations_ms(namespaced_operator.log())
    assert len(durations) >= 50
    p95 = statistics.quantiles(durations, n=20)[-1]
    # Reported, not asserted: timing belongs to benchmarks (see the closing note).
    print(
        f"\n50 JobQueues: {len(durations)} reconciles, p50 {statistics.median(durations):.1f} ms,"
        f" p95 {p95:.1f} ms, max {max(durations):.1f} ms"
    )


async def test_settings_typo_passes_the_schema_and_leaves_others_alone(
    kube: ApiClient, namespace: str, namespaced_operator: OperatorProcess
) -> None:
    # A typo in an import path is a valid string: only the pods can tell. Without a kubelet
    # here no pod runs, so this checks that a JobQueue the operator cannot serve (its Secret
    # missing) never stops it from serving the next one.
    await create_jobqueue(
        kube,
        namespace,
        "broken",
        {**plain_spec(), "redis": {"urlSecretRef": {"name": "nope", "key": "url"}}},
    )
    await create_jobqueue(kube, namespace, "fine", plain_spec())
    await wait_reconciled(kube, namespace, "fine")
    broken = await wait_reconciled(kube, namespace, "broken")
    [ready] = [c for c in broken["status"]["conditions"] if c["type"] == "Ready"]
    assert ready["reason"] == "RedisSecretMissing"
    assert namespaced_operator.popen is not None
    assert namespaced_operator.popen.poll() is None


@pytest.fixture
async def podmonitor_api(kube_crds: ControlPlane) -> AsyncIterator[None]:
    manifest = str(crd_file("podmonitors"))
    kubectl(kube_crds, "apply", "-f", manifest)
    kubectl(
        kube_crds, "wait", "--for=condition=Established", "crd/podmonitors.monitoring.coreos.com"
    )
    yield
    kubectl(kube_crds, "delete", "-f", manifest, "--wait=true")


@pytest.mark.usefixtures("podmonitor_api")
async def test_rbac_rules_are_exactly_the_calls_made(
    kube: ApiClient, kube_crds: ControlPlane, namespace: str, redis_url: str
) -> None:
    """Run every path under the namespaced Role alone; the audit log must use every rule."""
    user = "arqfleet-op-rbac-audit"
    kubeconfig = bind_operator_rbac(kube_crds, [namespace], user=user)
    process = OperatorProcess(kube_crds, kubeconfig, namespaces=[namespace])
    process.start()
    backlog = redis.Redis.from_url(redis_url)
    try:
        await CoreV1Api(kube).create_namespaced_secret(
            namespace,
            V1Secret(metadata=V1ObjectMeta(name="creds"), string_data={"url": redis_url}),
        )
        # 25 jobs waiting: the scaler scales up (pods that never get ready: no node here).
        pool = await create_pool(RedisSettings.from_dsn(redis_url))
        for i in range(25):
            await pool.enqueue_job("fast", f"j{i}")
        await pool.aclose()
        spec = {
            **plain_spec(disruptionBudget={"maxUnavailable": 1}),
            "redis": {"urlSecretRef": {"name": "creds", "key": "url"}},
            "scaling": {
                "maxReplicas": 3,
                "pollSeconds": 1,
                "scaleDown": {"stabilizationSeconds": 0},
            },
        }
        await create_jobqueue(kube, namespace, "q", spec)
        await wait_reconciled(kube, namespace, "q")
        await wait_replicas(kube, namespace, lambda n: n == 3, "a scale-up to 3")
        selector = "arqfleet.io/jobqueue=q"
        pods = CoreV1Api(kube)

        async def three_pods() -> bool:
            listed = await pods.list_namespaced_pod(namespace, label_selector=selector)
            return len(listed.items) == 3

        await async_wait_for(three_pods, timeout=30, what="3 worker pods")
        backlog.delete("arq:queue")  # the queue empties: scale down, idle pods first
        await wait_replicas(kube, namespace, lambda n: n < 3, "a scale-down")
        pm_path = f"/apis/monitoring.coreos.com/v1/namespaces/{namespace}/podmonitors/q-worker"
        await async_wait_for(lambda: get_path(kube, pm_path), timeout=30, what="PodMonitor")
        # Monitoring off: the PodMonitor goes (get, then delete).
        await merge_patch_jobqueue(
            kube, namespace, "q", {"spec": {"monitoring": {"podMonitor": False}}}
        )

        async def podmonitor_gone() -> bool:
            return await get_path(kube, pm_path) is None

        await async_wait_for(podmonitor_gone, timeout=30, what="the PodMonitor deleted")

        # Drop the budget (PDB delete), then delete the Deployment (JobQueue get, recreate).
        await merge_patch_jobqueue(
            kube, namespace, "q", {"spec": {"worker": {"disruptionBudget": None}}}
        )
        pdb = f"/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets/q-worker"

        async def pdb_gone() -> bool:
            return await get_path(kube, pdb) is None

        await async_wait_for(pdb_gone, timeout=30, what="the PDB deleted")
        first = await get_deployment(kube, namespace, "q-worker")
        assert first is not None
        await AppsV1Api(kube).delete_namespaced_deployment("q-worker", namespace)

        async def recreated() -> bool:
            dep = await get_deployment(kube, namespace, "q-worker")
            return bool(dep and dep["metadata"]["uid"] != first["metadata"]["uid"])

        await async_wait_for(recreated, timeout=30, what="the Deployment recreated")
    finally:
        backlog.close()
        assert process.stop() == 0, process.log()

    used = audited_calls(kube_crds, user)
    granted = rbac.granted()
    assert used <= granted, f"calls the rules do not grant: {used - granted}"
    unused = granted - used - rbac.AUTHORIZATION_ONLY
    assert not unused, f"rules granted but never used: {sorted(unused)}"


async def test_a_hung_redis_delays_only_its_own_queues(
    kube: ApiClient, namespace: str, namespaced_operator: OperatorProcess
) -> None:
    hung, healthy = RedisServer(), RedisServer()
    hung.start()
    healthy.start()
    try:
        scaling = {"maxReplicas": 3, "pollSeconds": 1, "scaleDown": {"stabilizationSeconds": 0}}
        for name, server in (("on-hung", hung), ("on-healthy", healthy)):
            spec = {**plain_spec(), "redis": {"url": server.url}, "scaling": scaling}
            await create_jobqueue(kube, namespace, name, spec)
        # Both polled while their Redis answers (each learns it is reachable).
        for name in ("on-hung", "on-healthy"):
            await async_wait_for(
                functools.partial(_reachable, kube, namespace, name),
                timeout=30,
                what=f"{name} RedisReachable=True",
            )
        assert hung.process is not None
        os.kill(hung.process.pid, signal.SIGSTOP)
        try:
            pool = await create_pool(RedisSettings.from_dsn(healthy.url))
            for i in range(25):
                await pool.enqueue_job("fast", f"j{i}")
            await pool.aclose()
            # The healthy Redis's queue scales within a few polls although every round on the
            # hung one waits out its whole deadline.
            await wait_replicas(kube, namespace, lambda n: n == 3, "on-healthy up", "on-healthy")
            condition = await async_wait_for(
                lambda: _unreachable(kube, namespace, "on-hung"),
                timeout=30,
                what="on-hung RedisReachable=False",
            )
            assert "did not answer" in condition["message"]
        finally:
            os.kill(hung.process.pid, signal.SIGCONT)
    finally:
        hung.cleanup()
        healthy.cleanup()


async def _reachable(kube: ApiClient, namespace: str, name: str) -> bool:
    condition = await ready_condition(kube, namespace, name, "RedisReachable")
    return bool(condition and condition["status"] == "True")


async def _unreachable(kube: ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    condition = await ready_condition(kube, namespace, name, "RedisReachable")
    return condition if condition and condition["status"] == "False" else None


async def test_a_repair_the_api_server_refused_is_retried(
    kube: ApiClient, kube_crds: ControlPlane, namespace: str
) -> None:
    """kopf runs event handlers once and ignores their errors: a deleted Deployment whose
    re-creation the API server refuses must still come back once it stops refusing. The
    refusal is real: the operator's Role loses its Deployment write verbs for a while."""
    user = "arqfleet-op-resync"
    kubeconfig = bind_operator_rbac(kube_crds, [namespace], user=user)
    process = OperatorProcess(kube_crds, kubeconfig, namespaces=[namespace])
    process.start()
    try:
        await create_jobqueue(kube, namespace, "q", plain_spec())
        first = await async_wait_for(
            lambda: get_deployment(kube, namespace, "q-worker"), timeout=30, what="Deployment"
        )
        role = kubectl(kube_crds, "-n", namespace, "get", "role", user, "-o", "json").stdout
        granted = json.loads(role)
        refusing = copy.deepcopy(granted)
        for rule in refusing["rules"]:
            if rule["resources"] == ["deployments"]:
                rule["verbs"] = [v for v in rule["verbs"] if v not in ("create", "patch")]
        kubectl(kube_crds, "replace", "-f", "-", stdin=json.dumps(refusing))
        await AppsV1Api(kube).delete_namespaced_deployment("q-worker", namespace)
        wait_for(
            lambda: "reconcile failed" in process.log() and "trying again" in process.log(),
            timeout=30,
            what="the refused repair to be scheduled again",
        )
        assert await get_deployment(kube, namespace, "q-worker") is None
        granted["metadata"].pop("resourceVersion", None)
        kubectl(
            kube_crds,
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            "-",
            stdin=json.dumps(granted),
        )

        async def recreated() -> bool:
            dep = await get_deployment(kube, namespace, "q-worker")
            return bool(dep and dep["metadata"]["uid"] != first["metadata"]["uid"])

        # No JobQueue change, no Deployment event: only the operator's own retry brings it back.
        await async_wait_for(recreated, timeout=60, what="the Deployment recreated")
    finally:
        assert process.stop() == 0, process.log()


async def test_malformed_queue_data_is_skipped_counted_and_scaling_goes_on(
    kube: ApiClient, namespace: str, namespaced_operator: OperatorProcess, redis_url: str
) -> None:
    junk: Any = redis.Redis.from_url(redis_url)
    try:
        junk.zadd("arq:queue", {"not-an-arq-job": 1, b"\xff\xfe": 2})
        junk.hset(
            "arqfleet:heartbeats:arq:queue",
            mapping={"corrupt": b"{nope", "future": b'{"version": 99}', "huge": b"x" * 500_000},
        )
        junk.set("arqfleet:cron-next:arq:queue", b"not json")
        await backlog_of(redis_url, 25)
        spec = {
            **plain_spec(),
            "redis": {"url": redis_url},
            "scaling": {"maxReplicas": 3, "pollSeconds": 1},
        }
        await create_jobqueue(kube, namespace, "q", spec)
        # The 25 real jobs scale it; the two members that are not jobs are not counted.
        await wait_replicas(kube, namespace, lambda n: n == 3, "a scale-up to 3")

        def counted() -> bool:
            text = namespaced_operator.metrics()
            labels = f'{{jobqueue="q",namespace="{namespace}"}}'
            return (
                f"arqfleet_probe_skipped_members_total{labels}" in text
                and f"arqfleet_probe_bad_heartbeats_total{labels}" in text
            )

        wait_for(counted, timeout=30, what="the skipped members and heartbeats counted")
        jq = await get_jobqueue(kube, namespace, "q")
        assert jq is not None
        assert jq["status"]["queue"]["ready"] == 25
        # When the oldest of them became due: the backlog was enqueued moments ago.
        oldest = datetime.fromisoformat(jq["status"]["queue"]["oldestReadyTime"])
        assert timedelta(0) <= datetime.now(UTC) - oldest < timedelta(minutes=2)
        log = namespaced_operator.log()
        assert "are not arq jobs: skipped" in log
        assert "heartbeats could not be read: skipped" in log
        assert "Traceback" not in log
    finally:
        junk.close()


async def backlog_of(redis_url: str, jobs: int) -> None:
    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    for i in range(jobs):
        await pool.enqueue_job("fast", f"j{i}")
    await pool.aclose()
