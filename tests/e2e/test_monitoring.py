"""Monitoring end to end: a real Prometheus (Debian's binary) scrapes the real operator and the
worker pods a real kubelet runs (the example image) at their pod IPs, with the shipped alert
rules loaded. The shipped dashboard's queries run against it, and stopping Redis takes the
Redis-unreachable alert through pending and firing to resolved, read from Prometheus's own
/api/v1/alerts.

The rules are loaded with every `for:` shortened to FOR, in a copy the fixture writes and checks
to differ from deploy/prometheus-rules.yaml in nothing else. The production durations (minutes)
are proven by tests/rules/*.test.yaml in promtool's simulated time; what this module proves is
the wiring: targets and their labels, the expressions over real series, the alert lifecycle.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from arq.connections import ArqRedis
from kubernetes_asyncio.client import ApiClient

from arqfleet.operator import constants as c
from tests.support.monitoring_files import (
    dashboard_queries,
    load_dashboard,
    load_rules,
    substitute,
    variable_queries,
    with_for,
    without_for,
)
from tests.support.operator_checks import create_jobqueue, list_pods
from tests.support.operator_process import OperatorProcess
from tests.support.prometheus_server import ApiAnswer, PrometheusServer, ScrapeJob
from tests.support.redis_server import RedisServer
from tests.support.waiting import WaitTimeout, async_wait_for

pytestmark = pytest.mark.cluster

FOR = "3s"  # long enough to be seen pending for a few 1 s evaluations
OPERATOR_JOB = "arqfleet-operator"
WORKER_JOB = "arqfleet-worker"
# Where the chart's bundle runs the operator: its own series must keep the JobQueues' namespace.
OPERATOR_TARGET_LABELS = {"namespace": "arqfleet-system", "pod": "arqfleet-operator-0"}
# Panels whose every query must return data while a fleet runs jobs; the others (errors,
# operator-wide internals) may be empty in a healthy run but must still parse.
CORE_PANELS = {
    "Ready",
    "Running",
    "Deferred",
    "Oldest ready",
    "Replicas",
    "Dead letters",
    "Queue depth",
    "Oldest ready job age",
    "Replicas: desired and current",
    "Redis reachable and scaling limited",
    "Jobs finished by outcome",
    "Dead letters: stored and new",
    "Job duration",
    "Queue wait",
    "Scale events",
    "annotation: Scale events",
}


def spec(image: str, redis_url: str, scaling: dict[str, Any], max_jobs: int) -> dict[str, Any]:
    return {
        "redis": {"url": redis_url},
        "worker": {
            "image": image,
            "imagePullPolicy": "Never",  # imported into the node's containerd: no registry here
            "settings": "examples.app.worker.WorkerSettings",
            "maxJobs": max_jobs,
            "jobTimeoutSeconds": 30,
            "drainSeconds": 30,
            "env": [{"name": "EXAMPLE_CRON_EVERY_SECONDS", "value": "0"}],
        },
        "scaling": {"pollSeconds": 1, **scaling},
    }


@pytest.fixture
def prometheus(e2e_operator: OperatorProcess, tmp_path: Path) -> Iterator[PrometheusServer]:
    shipped = load_rules()
    fast = with_for(shipped, FOR)
    assert without_for(fast) == without_for(shipped)
    rules = tmp_path / "prometheus-rules.yaml"
    rules.write_text(yaml.safe_dump(fast, sort_keys=False))
    server = PrometheusServer(
        rule_files=[rules],
        jobs=[ScrapeJob(OPERATOR_JOB, honor_labels=True), ScrapeJob(WORKER_JOB)],
        workdir=tmp_path / "prometheus",
    )
    target = f"127.0.0.1:{e2e_operator.metrics_port}"
    server.set_targets(OPERATOR_JOB, [{"targets": [target], "labels": OPERATOR_TARGET_LABELS}])
    try:
        server.start()
        yield server
    finally:
        code = server.stop()
    assert code == 0, server.log()


def worker_targets(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """file_sd groups for worker pods, labelled as the chart's docs ask a PodMonitor to label
    them: namespace, jobqueue (from the pod label), pod."""
    groups = []
    for pod in pods:
        address = (pod.get("status") or {}).get("podIP")
        if not address:
            continue  # not started yet: the kubelet reports the IP once the sandbox is up
        [port] = [
            p["containerPort"]
            for container in pod["spec"]["containers"]
            for p in container.get("ports") or ()
            if p.get("name") == c.WORKER_HTTP_PORT_NAME
        ]
        meta = pod["metadata"]
        labels = {
            "namespace": meta["namespace"],
            "jobqueue": meta["labels"][c.LABEL_JOBQUEUE],
            "pod": meta["name"],
        }
        # The host reaches pod IPs on the node's bridge, as Prometheus reaches pods in-cluster.
        groups.append({"targets": [f"{address}:{port}"], "labels": labels})
    return sorted(groups, key=lambda group: str(group["labels"]["pod"]))


@asynccontextmanager
async def scraping_workers(
    api: ApiClient, namespace: str, name: str, prometheus: PrometheusServer
) -> AsyncIterator[None]:
    """Keep Prometheus's worker targets equal to the JobQueue's pods, as pod discovery would."""

    async def follow() -> None:
        written: list[dict[str, Any]] | None = None
        while True:
            groups: list[dict[str, Any]] | None
            try:
                groups = worker_targets(await list_pods(api, namespace, name))
            except Exception:  # a failed read keeps the last targets, as discovery does
                groups = written
            if groups is not None and groups != written:
                prometheus.set_targets(WORKER_JOB, groups)
                written = groups
            await asyncio.sleep(0.2)

    task = asyncio.create_task(follow())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def has_series(prometheus: PrometheusServer, expr: str) -> bool:
    return bool(await asyncio.to_thread(prometheus.query, expr))


def returns_data(answer_data: dict[str, Any]) -> bool:
    """A range query's result has at least one finite value (histogram_quantile over no
    observations gives NaN, which Grafana draws as nothing)."""
    return any(
        math.isfinite(float(value))
        for series in answer_data["result"]
        for _, value in series["values"]
    )


# -- the dashboard ------------------------------------------------------------------------------


async def test_every_dashboard_query_runs_against_prometheus_scraping_the_fleet(
    kube: ApiClient,
    namespace: str,
    example_image: str,
    e2e_operator: OperatorProcess,
    prometheus: PrometheusServer,
    redis_url: str,
    arq_pool: ArqRedis,
) -> None:
    board = load_dashboard()
    places = {query.where for query in dashboard_queries(board)}
    assert places >= CORE_PANELS, CORE_PANELS - places
    name = "dash"
    # One pod always (its counters hold the run's history), up to three for the burst; the
    # long scale-down window keeps the extra pods, and their series, for the whole test.
    scaling = {
        "minReplicas": 1,
        "maxReplicas": 3,
        "jobsPerReplica": 4,
        "scaleDown": {"stabilizationSeconds": 120},
    }
    started = time.time()
    await create_jobqueue(
        kube, namespace, name, spec(example_image, redis_url, scaling, max_jobs=4)
    )
    queue = f'namespace="{namespace}", jobqueue="{name}"'
    async with scraping_workers(kube, namespace, name, prometheus):
        await async_wait_for(
            lambda: has_series(prometheus, f'up{{job="{WORKER_JOB}", {queue}}} == 1'),
            timeout=40,
            interval=0.2,
            what="the first worker scraped",
        )
        tags = [f"s{i}" for i in range(12)] + [f"f{i}" for i in range(30)]
        for tag in tags[:12]:
            await arq_pool.enqueue_job("slow", tag, seconds=2)
        for tag in tags[12:]:
            await arq_pool.enqueue_job("fast", tag)
        for i in range(2):
            await arq_pool.enqueue_job("boom", f"b{i}")  # failure, then a dead letter
            await arq_pool.enqueue_job("remind", f"later{i}", _defer_by=600)  # stays deferred
        await arq_pool.enqueue_job("always_fails", "a0")  # retries, then a dead letter

        values = {"namespace": namespace, "jobqueue": name, "__rate_interval": "1m"}
        queries = {
            f"{query.where} {query.ref}".strip(): (query.where, substitute(query.expr, values))
            for query in dashboard_queries(board)
        }

        async def run_all() -> dict[str, ApiAnswer]:
            # A range query over the test so far, as Grafana asks for a panel's data.
            return {
                where: await asyncio.to_thread(prometheus.query_range, expr, started, time.time())
                for where, (_, expr) in queries.items()
            }

        # Every query parses, whatever the data.
        refused = {w: a.body.get("error") for w, a in (await run_all()).items() if a.status != 200}
        assert not refused

        missing: list[str] = []

        async def core_panels_have_data() -> dict[str, ApiAnswer] | None:
            answers = await run_all()
            missing[:] = [
                where
                for where, answer in answers.items()
                if queries[where][0] in CORE_PANELS and not returns_data(answer.data)
            ]
            return None if missing else answers

        # The workers finish the jobs within seconds; the scrapes and rate windows follow.
        try:
            answers = await async_wait_for(
                core_panels_have_data, timeout=60, interval=1, what="data in every core panel"
            )
        except WaitTimeout as timeout:
            raise AssertionError(f"core panels without data: {missing}") from timeout
    empty = sorted(where for where, answer in answers.items() if not returns_data(answer.data))
    print(f"\n{len(answers)} dashboard queries ran; without data in this run: {empty}")

    # The variables find this JobQueue.
    for variable, (selector, label) in variable_queries(board).items():
        answer = await asyncio.to_thread(
            prometheus.get, f"label/{label}/values", **{"match[]": substitute(selector, values)}
        )
        assert values[variable] in answer.data, (variable, answer.data)


# -- the Redis-unreachable alert -------------------------------------------------------------


async def test_redis_unreachable_alert_goes_pending_then_firing_and_resolves(
    kube: ApiClient,
    namespace: str,
    example_image: str,
    e2e_operator: OperatorProcess,
    prometheus: PrometheusServer,
    redis_server: RedisServer,
) -> None:
    name = "outage"
    scaling = {"minReplicas": 1, "maxReplicas": 1}
    await create_jobqueue(
        kube, namespace, name, spec(example_image, redis_server.url, scaling, max_jobs=1)
    )
    queue = f'namespace="{namespace}", jobqueue="{name}"'
    await async_wait_for(
        lambda: has_series(prometheus, f"arqfleet_redis_reachable{{{queue}}} == 1"),
        timeout=30,
        interval=0.2,
        what="Prometheus to see the JobQueue's Redis reachable",
    )
    # honor_labels kept the JobQueue's namespace on the operator's series (not arqfleet-system).
    assert await has_series(prometheus, f'up{{job="{OPERATOR_JOB}"}} == 1')

    async def ours() -> list[dict[str, Any]]:
        return [
            alert
            for alert in await asyncio.to_thread(prometheus.alerts)
            if alert["labels"]["alertname"] == "ArqfleetRedisUnreachable"
            and alert["labels"].get("namespace") == namespace
            and alert["labels"].get("jobqueue") == name
        ]

    states: list[str] = []

    async def firing() -> dict[str, Any] | None:
        found = await ours()
        if found:
            states.append(found[0]["state"])
        return found[0] if found and found[0]["state"] == "firing" else None

    assert await ours() == []
    redis_server.stop()
    alert = await async_wait_for(firing, timeout=30, interval=0.1, what="the alert firing")
    assert states[0] == "pending", states
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["job"] == OPERATOR_JOB
    assert alert["annotations"]["summary"] == (
        f"The Redis of JobQueue {namespace}/{name} does not answer."
    )
    assert alert["annotations"]["runbook_url"].endswith("/docs/runbook.md#arqfleetredisunreachable")

    redis_server.start()  # same port: the operator's pool reconnects by itself

    async def resolved() -> bool:
        return await ours() == []

    await async_wait_for(resolved, timeout=30, interval=0.2, what="the alert resolved")

    # Every shipped rule evaluated cleanly against the real series (a many-to-many match or a
    # bad label only shows up at evaluation time, not in promtool's checks).
    rules = await asyncio.to_thread(prometheus.rules)
    unhealthy = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert len(rules) == sum(len(group["rules"]) for group in load_rules()["groups"])
    assert not unhealthy
