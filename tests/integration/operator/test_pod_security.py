"""Worker pods pass Pod Security "restricted" on a real apiserver.

Every test namespace enforces "restricted" (tests/conftest.py), so the ReplicaSet controller
can create the worker pods only if the apiserver's PodSecurity admission admits them. These
tests show that it does, with the defaults and with overrides that stay within "restricted",
and that it really enforces: a JobQueue that opts out (`podSecurity: baseline`) gets no pods
there, and its status says why."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient, CoreV1Api

from tests.conftest import RESTRICTED_POD_SECURITY
from tests.support.operator_checks import create_jobqueue, list_pods, ready_condition
from tests.support.waiting import async_wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("operator")]


def spec(**worker: Any) -> dict[str, Any]:
    return {
        # Nothing listens there: the loop holds replicas at minReplicas, enough for the test.
        "redis": {"url": "redis://redis.invalid:6379"},
        "worker": {"image": "ghcr.io/acme/app:1.0", "settings": "app.WorkerSettings", **worker},
        "scaling": {"minReplicas": 1, "maxReplicas": 2},
    }


async def test_the_namespace_enforces_restricted(kube: ApiClient, namespace: str) -> None:
    labels = (await CoreV1Api(kube).read_namespace(namespace)).metadata.labels
    assert RESTRICTED_POD_SECURITY.items() <= labels.items()


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({}, id="defaults"),
        pytest.param(
            {
                "podSecurityContext": {"runAsUser": 4242, "runAsGroup": 4242, "fsGroup": 4242},
                "securityContext": {
                    "readOnlyRootFilesystem": False,
                    "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
                },
            },
            id="overrides-within-restricted",
        ),
    ],
)
async def test_worker_pods_are_admitted_under_restricted(
    kube: ApiClient, namespace: str, overrides: dict[str, Any]
) -> None:
    await create_jobqueue(kube, namespace, "q", spec(**overrides))
    pods = await async_wait_for(
        lambda: list_pods(kube, namespace, "q"), timeout=60, what="a worker pod admitted"
    )
    assert pods[0]["spec"]["securityContext"]["runAsNonRoot"] is True
    condition = await ready_condition(kube, namespace, "q")
    assert condition is None or condition["reason"] != "PodCreationFailed", condition


async def test_a_baseline_worker_is_refused_by_a_restricted_namespace_and_reported(
    kube: ApiClient, namespace: str
) -> None:
    root = spec(podSecurity="baseline", podSecurityContext={"runAsNonRoot": False, "runAsUser": 0})
    await create_jobqueue(kube, namespace, "q", root)

    async def refused() -> dict[str, Any] | None:
        condition = await ready_condition(kube, namespace, "q")
        return condition if condition and condition["reason"] == "PodCreationFailed" else None

    condition = await async_wait_for(refused, timeout=90, what="PodCreationFailed")
    assert 'violates PodSecurity "restricted' in condition["message"], condition
    assert await list_pods(kube, namespace, "q") == []
