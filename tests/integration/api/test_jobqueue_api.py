"""The JobQueue CRD on a real kube-apiserver: installs, defaults, rejects, prints."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient, ApiextensionsV1Api, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from arqfleet.operator import models
from arqfleet.operator.crd import CRD_NAME
from arqfleet.operator.models import JobQueueSpec
from localcluster import ControlPlane
from tests.support.jobqueues import (
    INVALID,
    VALID,
    Invalid,
    Valid,
    jobqueue,
    load_example,
    minimal_spec,
)
from tests.support.kube import kubectl, merge_patch_jobqueue, table_rows

pytestmark = pytest.mark.cluster

GROUP, VERSION, PLURAL = models.API_GROUP, models.API_VERSION, models.PLURAL


def error_message(error: ApiException) -> str:
    body = error.body or b"{}"
    message: str = json.loads(body)["message"]
    return message


async def create(kube: ApiClient, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    created: dict[str, Any] = await CustomObjectsApi(kube).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body, field_validation="Strict"
    )
    return created


async def test_crd_is_established(kube: ApiClient) -> None:
    crd = await ApiextensionsV1Api(kube).read_custom_resource_definition(CRD_NAME)
    conditions = {c.type: c.status for c in crd.status.conditions}
    assert conditions["Established"] == "True"
    assert conditions["NamesAccepted"] == "True"
    assert crd.spec.names.short_names == ["jq"]
    assert crd.spec.versions[0].subresources.status == {}


@pytest.mark.parametrize("example", ["jobqueue-minimal.yaml", "jobqueue-full.yaml"])
async def test_examples_are_accepted_with_defaults(
    kube: ApiClient, namespace: str, example: str
) -> None:
    body = load_example(example)
    created = await create(kube, namespace, body)
    # The server filled in the same defaults as the models: one source of truth, two readers.
    expected = JobQueueSpec.model_validate(body["spec"]).model_dump(
        by_alias=True, exclude_none=True
    )
    assert created["spec"] == expected


async def test_minimal_example_gets_every_scaling_default(kube: ApiClient, namespace: str) -> None:
    created = await create(kube, namespace, jobqueue("defaults", minimal_spec()))
    spec = created["spec"]
    assert spec["queueName"] == "arq:queue"
    assert spec["paused"] is False
    assert spec["worker"]["maxJobs"] == 10
    assert spec["worker"]["drainSeconds"] == 330
    assert spec["scaling"]["scaleUp"] == {
        "stabilizationSeconds": 0,
        "maxPercent": 100,
        "maxPods": 4,
        "periodSeconds": 15,
    }
    # 60 s, not HPA's 300: see bench/RESULTS.md (the simulator).
    assert spec["scaling"]["scaleDown"]["stabilizationSeconds"] == 60


def test_at_least_25_distinct_invalid_cases() -> None:
    assert len({case.id for case in INVALID}) == len(INVALID) >= 25


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
async def test_invalid_jobqueue_is_rejected_naming_the_field(
    kube: ApiClient, namespace: str, case: Invalid
) -> None:
    with pytest.raises(ApiException) as raised:
        await create(kube, namespace, jobqueue(case.name, case.spec()))
    message = error_message(raised.value)
    # 422 Invalid for schema and CEL errors; 400 for unknown fields under strict validation.
    assert raised.value.status in (400, 422), message
    assert case.message in message, message


@pytest.mark.parametrize("case", VALID, ids=lambda c: c.id)
async def test_unusual_but_valid_jobqueue_is_accepted_as_written(
    kube: ApiClient, namespace: str, case: Valid
) -> None:
    body = jobqueue("good", case.spec())
    created = await create(kube, namespace, body)
    # Nothing defaulted or pruned inside the core/v1 fields: the models read what was written.
    expected = JobQueueSpec.model_validate(body["spec"]).model_dump(
        by_alias=True, exclude_none=True
    )
    assert created["spec"] == expected


async def test_password_never_stored_from_a_rejected_url(kube: ApiClient, namespace: str) -> None:
    spec = minimal_spec()
    spec["redis"]["url"] = "redis://:hunter2@r:6379/0"
    with pytest.raises(ApiException):
        await create(kube, namespace, jobqueue("leaky", spec))
    listed = await CustomObjectsApi(kube).list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL
    )
    assert listed["items"] == []


async def test_status_changes_only_through_the_status_subresource(
    kube: ApiClient, namespace: str
) -> None:
    await create(kube, namespace, jobqueue("st", minimal_spec()))
    status = {"desiredReplicas": 3, "queue": {"ready": 7}}

    # Through the main resource the status is dropped (spec/status split of the subresource).
    patched = await merge_patch_jobqueue(kube, namespace, "st", {"status": status})
    assert "status" not in patched or patched["status"].get("desiredReplicas") is None

    # Through /status it sticks, and a spec change there is ignored.
    patched = await merge_patch_jobqueue(
        kube, namespace, "st", {"status": status, "spec": {"paused": True}}, status=True
    )
    assert patched["status"]["desiredReplicas"] == 3
    assert patched["status"]["queue"]["ready"] == 7
    assert patched["spec"]["paused"] is False

    # The status schema is enforced too.
    with pytest.raises(ApiException) as raised:
        await merge_patch_jobqueue(
            kube, namespace, "st", {"status": {"desiredReplicas": -1}}, status=True
        )
    assert "status.desiredReplicas" in error_message(raised.value)


async def test_kubectl_get_jq_shows_printer_columns(
    kube: ApiClient, kube_crds: ControlPlane, namespace: str
) -> None:
    await create(kube, namespace, jobqueue("emails", minimal_spec()))
    await merge_patch_jobqueue(
        kube,
        namespace,
        "emails",
        {"status": {"replicas": 2, "desiredReplicas": 3, "queue": {"ready": 42, "inProgress": 5}}},
        status=True,
    )
    out = kubectl(kube_crds, "get", "jq", "-n", namespace).stdout
    header = ["NAME", "QUEUE", "READY", "RUNNING", "OLDEST", "REPLICAS", "DESIRED", "AGE"]
    assert out.splitlines()[0].split() == header
    [row] = table_rows(out)
    # OLDEST is blank: this status has no oldestReadyTime (the operator omits it when idle).
    assert [row[column] for column in header[:-1]] == [
        "emails",
        "arq:queue",
        "42",
        "5",
        "",
        "2",
        "3",
    ]

    ninety_minutes_ago = datetime.now(UTC) - timedelta(minutes=90)
    await merge_patch_jobqueue(
        kube,
        namespace,
        "emails",
        {"status": {"queue": {"oldestReadyTime": f"{ninety_minutes_ago:%Y-%m-%dT%H:%M:%SZ}"}}},
        status=True,
    )
    [row] = table_rows(kubectl(kube_crds, "get", "jq", "-n", namespace).stdout)
    # A date column: kubectl shows how long ago the oldest ready job became due.
    assert row["OLDEST"] in {"90m", "91m"}, row

    wide = kubectl(kube_crds, "get", "jobqueues", "-n", namespace, "-o", "wide").stdout
    assert "DEFERRED" in wide.splitlines()[0]
    # The category makes `kubectl get arqfleet` list them too.
    assert "emails" in kubectl(kube_crds, "get", "arqfleet", "-n", namespace).stdout


async def test_kubectl_apply_of_a_bad_object_names_the_field(
    kube_crds: ControlPlane, namespace: str
) -> None:
    spec = minimal_spec()
    spec["scaling"] = {"minReplicas": 9, "maxReplicas": 3}
    result = kubectl(
        kube_crds,
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=json.dumps(jobqueue("bad", spec)),
        check=False,
    )
    assert result.returncode != 0
    assert "spec.scaling.minReplicas" in result.stderr
    assert "must be <= scaling.maxReplicas" in result.stderr
