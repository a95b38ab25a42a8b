"""The operator on a real control plane: every JobQueue gets an owned worker Deployment,
kept that way against edits and deletion, and garbage-collected with its JobQueue."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import subprocess
from typing import Any

import pytest
import yaml
from kubernetes_asyncio.client import (
    ApiClient,
    AppsV1Api,
    CoreV1Api,
    CustomObjectsApi,
    V1ObjectMeta,
    V1Secret,
)
from kubernetes_asyncio.client.exceptions import ApiException

from arqfleet.operator import models
from localcluster import ControlPlane
from tests.support.kube import REPO_ROOT, kubectl, merge_patch_jobqueue
from tests.support.monitoring_crds import crd_file
from tests.support.operator_checks import (
    create_jobqueue,
    event_reasons,
    get_deployment,
    get_path,
    ready_condition,
)
from tests.support.operator_process import OperatorProcess
from tests.support.prometheus_tools import promtool_binary
from tests.support.redis_server import RedisServer
from tests.support.waiting import async_wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("operator")]

MERGE = "application/merge-patch+json"


def secret_spec() -> dict[str, Any]:
    return {
        "redis": {"urlSecretRef": {"name": "redis-credentials", "key": "url"}},
        "worker": {
            "image": "ghcr.io/acme/app:1.0",
            "settings": "app.worker.WorkerSettings",
            "maxJobs": 4,
            "jobTimeoutSeconds": 60,
            "drainSeconds": 90,
            "env": [{"name": "LOG_LEVEL", "value": "debug"}],
            "resources": {"requests": {"cpu": "100m"}},
            "nodeSelector": {"pool": "batch"},
            "podLabels": {"team": "data"},
            "podAnnotations": {"note": "x"},
            "disruptionBudget": {"maxUnavailable": 1},
        },
        "scaling": {"minReplicas": 2, "maxReplicas": 5},
    }


async def create_secret(api: ApiClient, namespace: str) -> None:
    secret = V1Secret(
        metadata=V1ObjectMeta(name="redis-credentials"),
        data={"url": base64.b64encode(b"redis://:pw@redis:6379/0").decode()},
    )
    await CoreV1Api(api).create_namespaced_secret(namespace, secret)


async def deployment_of(kube: ApiClient, namespace: str, name: str = "q") -> dict[str, Any]:
    return await async_wait_for(
        lambda: get_deployment(kube, namespace, f"{name}-worker"),
        timeout=30,
        what=f"Deployment {name}-worker",
    )


async def test_create_gives_a_deployment_with_every_field(kube: ApiClient, namespace: str) -> None:
    await create_secret(kube, namespace)
    jq = await create_jobqueue(kube, namespace, "q", secret_spec())
    dep = await deployment_of(kube, namespace)

    assert dep["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "arqfleet"
    assert dep["metadata"]["labels"]["arqfleet.io/jobqueue"] == "q"
    (owner,) = dep["metadata"]["ownerReferences"]
    assert owner["uid"] == jq["metadata"]["uid"]
    assert owner["kind"] == "JobQueue"
    assert owner["controller"] is True
    assert owner["blockOwnerDeletion"] is True
    assert dep["spec"]["replicas"] == 2  # minReplicas on create

    pod = dep["spec"]["template"]
    assert pod["metadata"]["labels"]["team"] == "data"
    assert pod["metadata"]["labels"]["arqfleet.io/jobqueue"] == "q"
    assert pod["metadata"]["annotations"]["note"] == "x"
    assert pod["spec"]["terminationGracePeriodSeconds"] == 90 + 15
    assert pod["spec"]["nodeSelector"] == {"pool": "batch"}
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["spec"]["volumes"] == [{"name": "tmp", "emptyDir": {}}]

    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["arqfleet-worker"]
    assert container["args"] == ["app.worker.WorkerSettings"]
    assert container["image"] == "ghcr.io/acme/app:1.0"
    env = {e["name"]: e for e in container["env"]}
    assert env["ARQFLEET_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "redis-credentials",
        "key": "url",
    }
    assert "value" not in env["ARQFLEET_REDIS_URL"]  # the password never enters the spec
    assert env["ARQFLEET_QUEUE_NAME"]["value"] == "arq:queue"
    assert env["ARQFLEET_MAX_JOBS"]["value"] == "4"
    assert env["ARQFLEET_JOB_TIMEOUT_SECONDS"]["value"] == "60"
    assert env["ARQFLEET_DRAIN_SECONDS"]["value"] == "90"
    assert env["ARQFLEET_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["LOG_LEVEL"]["value"] == "debug"
    assert container["livenessProbe"]["httpGet"] == {
        "path": "/healthz",
        "port": "http",
        "scheme": "HTTP",
    }
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["ports"][0]["containerPort"] == 8080
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert container["resources"] == {"requests": {"cpu": "100m"}}
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"

    pdb_path = f"/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets/q-worker"
    pdb = await async_wait_for(lambda: get_path(kube, pdb_path), timeout=30, what="the PDB")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"]["arqfleet.io/jobqueue"] == "q"

    condition = await async_wait_for(
        lambda: ready_condition(kube, namespace, "q"), timeout=30, what="Ready condition"
    )
    assert condition["reason"] in {"WorkersProgressing", "WorkersAvailable"}
    reasons = await async_wait_for(
        lambda: event_reasons(kube, namespace, "q"), timeout=30, what="Created event"
    )
    assert ("Normal", "Created") in reasons


async def test_update_of_image_and_env_rolls_the_deployment(
    kube: ApiClient, namespace: str
) -> None:
    await create_secret(kube, namespace)
    await create_jobqueue(kube, namespace, "q", secret_spec())
    before = await deployment_of(kube, namespace)

    await merge_patch_jobqueue(
        kube,
        namespace,
        "q",
        {
            "spec": {
                "worker": {"image": "ghcr.io/acme/app:2.0", "env": [{"name": "X", "value": "1"}]}
            }
        },
    )

    async def rolled() -> dict[str, Any] | None:
        dep = await get_deployment(kube, namespace, "q-worker")
        container = (dep or {})["spec"]["template"]["spec"]["containers"][0]
        return dep if container["image"] == "ghcr.io/acme/app:2.0" else None

    after = await async_wait_for(rolled, timeout=30, what="the new image in the Deployment")
    env = {e["name"] for e in after["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "X" in env
    assert "LOG_LEVEL" not in env  # removed from the JobQueue, so removed from the pods
    assert after["metadata"]["generation"] > before["metadata"]["generation"]
    assert after["spec"]["replicas"] == 2  # the update path never touches replicas
    reasons = await async_wait_for(
        lambda: _with(event_reasons(kube, namespace, "q"), ("Normal", "Updated")),
        timeout=30,
        what="Updated event",
    )
    assert reasons


async def _with(reasons_coro: Any, wanted: tuple[str, str]) -> bool:
    return wanted in await reasons_coro


async def test_replicas_chosen_by_the_scaler_survive_a_spec_update(
    kube: ApiClient, namespace: str
) -> None:
    await create_jobqueue(
        kube, namespace, "q", {**secret_spec(), "redis": {"url": "redis://r:6379"}}
    )
    await deployment_of(kube, namespace)
    # What the scaling loop does: apply the scale subresource as arqfleet-scaler.
    await kube.call_api(
        f"/apis/apps/v1/namespaces/{namespace}/deployments/q-worker/scale",
        "PATCH",
        query_params=[("fieldManager", "arqfleet-scaler"), ("force", "true")],
        header_params={"Content-Type": "application/apply-patch+yaml"},
        body={
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": "q-worker", "namespace": namespace},
            "spec": {"replicas": 4},
        },
        response_types_map={200: "object"},
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )
    await merge_patch_jobqueue(kube, namespace, "q", {"spec": {"worker": {"maxJobs": 8}}})

    async def updated() -> dict[str, Any] | None:
        dep = await get_deployment(kube, namespace, "q-worker")
        assert dep is not None
        container = dep["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        return dep if env["ARQFLEET_MAX_JOBS"] == "8" else None

    dep = await async_wait_for(updated, timeout=30, what="maxJobs 8 in the Deployment")
    assert dep["spec"]["replicas"] == 4


async def test_deleted_deployment_is_restored(kube: ApiClient, namespace: str) -> None:
    await create_jobqueue(
        kube, namespace, "q", {**secret_spec(), "redis": {"url": "redis://r:6379"}}
    )
    first = await deployment_of(kube, namespace)
    await AppsV1Api(kube).delete_namespaced_deployment("q-worker", namespace)

    async def recreated() -> dict[str, Any] | None:
        dep = await get_deployment(kube, namespace, "q-worker")
        return dep if dep and dep["metadata"]["uid"] != first["metadata"]["uid"] else None

    again = await async_wait_for(recreated, timeout=30, what="a new Deployment")
    assert again["spec"]["replicas"] == 2
    assert again["metadata"]["ownerReferences"] == first["metadata"]["ownerReferences"]
    assert await async_wait_for(
        lambda: _with(event_reasons(kube, namespace, "q"), ("Normal", "Recreated")),
        timeout=30,
        what="Recreated event",
    )


async def test_edited_deployment_is_repaired_and_foreign_fields_kept(
    kube: ApiClient, namespace: str
) -> None:
    await create_jobqueue(
        kube, namespace, "q", {**secret_spec(), "redis": {"url": "redis://r:6379"}}
    )
    await deployment_of(kube, namespace)
    # Someone edits a field we own (the image) and adds one we don't (an annotation).
    await AppsV1Api(kube).patch_namespaced_deployment(
        "q-worker",
        namespace,
        {
            "metadata": {"annotations": {"team.example/owner": "ops"}},
            "spec": {"template": {"spec": {"containers": [{"name": "worker", "image": "evil:1"}]}}},
        },
    )

    async def repaired() -> dict[str, Any] | None:
        dep = await get_deployment(kube, namespace, "q-worker")
        image = (dep or {})["spec"]["template"]["spec"]["containers"][0]["image"]
        return dep if image == "ghcr.io/acme/app:1.0" else None

    dep = await async_wait_for(repaired, timeout=30, what="the image restored")
    assert dep["metadata"]["annotations"]["team.example/owner"] == "ops"
    assert await async_wait_for(
        lambda: _with(event_reasons(kube, namespace, "q"), ("Normal", "Repaired")),
        timeout=30,
        what="Repaired event",
    )


async def test_deleting_the_jobqueue_garbage_collects_the_deployment(
    kube: ApiClient, namespace: str
) -> None:
    await create_jobqueue(
        kube, namespace, "q", {**secret_spec(), "redis": {"url": "redis://r:6379"}}
    )
    await deployment_of(kube, namespace)
    jq = await CustomObjectsApi(kube).get_namespaced_custom_object(
        models.API_GROUP, models.API_VERSION, namespace, models.PLURAL, "q"
    )
    assert not jq["metadata"].get("finalizers")  # no finalizer of ours (or kopf's)
    await CustomObjectsApi(kube).delete_namespaced_custom_object(
        models.API_GROUP, models.API_VERSION, namespace, models.PLURAL, "q"
    )

    async def gone() -> bool:
        return await get_deployment(kube, namespace, "q-worker") is None

    assert await async_wait_for(gone, timeout=60, what="garbage collection of the Deployment")


async def test_missing_secret_gives_condition_and_event_then_heals(
    kube: ApiClient, namespace: str
) -> None:
    await create_jobqueue(kube, namespace, "q", secret_spec())

    async def secret_missing() -> dict[str, Any] | None:
        condition = await ready_condition(kube, namespace, "q")
        return condition if condition and condition["reason"] == "RedisSecretMissing" else None

    condition = await async_wait_for(secret_missing, timeout=30, what="RedisSecretMissing")
    assert condition["status"] == "False"
    assert "redis-credentials" in condition["message"]
    assert await async_wait_for(
        lambda: _with(event_reasons(kube, namespace, "q"), ("Warning", "RedisSecretMissing")),
        timeout=30,
        what="Warning event",
    )
    # The Deployment exists anyway, so pods start as soon as the Secret does.
    assert await get_deployment(kube, namespace, "q-worker") is not None

    await create_secret(kube, namespace)

    async def healed() -> bool:
        condition = await ready_condition(kube, namespace, "q")
        return bool(condition and condition["reason"] != "RedisSecretMissing")

    assert await async_wait_for(healed, timeout=30, what="the condition to clear")


async def test_podmonitor_created_only_when_its_api_is_served(
    kube: ApiClient, namespace: str, operator: OperatorProcess
) -> None:

    manifest = str(crd_file("podmonitors"))
    path = f"/apis/monitoring.coreos.com/v1/namespaces/{namespace}/podmonitors/q-worker"
    await create_jobqueue(
        kube, namespace, "q", {**secret_spec(), "redis": {"url": "redis://r:6379"}}
    )
    await deployment_of(kube, namespace)
    assert "Traceback" not in operator.log()  # absent API: nothing created, nothing failed

    kubectl(operator.plane, "apply", "-f", manifest)
    kubectl(
        operator.plane,
        "wait",
        "--for=condition=Established",
        "crd/podmonitors.monitoring.coreos.com",
    )
    try:
        await merge_patch_jobqueue(
            kube, namespace, "q", {"spec": {"monitoring": {"interval": "15s"}}}
        )

        monitor = await async_wait_for(
            lambda: get_path(kube, path), timeout=30, what="the PodMonitor"
        )
        endpoint = monitor["spec"]["podMetricsEndpoints"][0]
        relabelings = endpoint.pop("relabelings")
        assert endpoint == {"port": "http", "path": "/metrics", "interval": "15s"}
        # The worker series get the labels the alerts and the dashboard join them by.
        assert {r["targetLabel"]: r["sourceLabels"] for r in relabelings} == {
            "jobqueue": ["__meta_kubernetes_pod_label_arqfleet_io_jobqueue"],
            "pod": ["__meta_kubernetes_pod_name"],
        }
    finally:
        kubectl(operator.plane, "delete", "-f", manifest, "--wait=true")


async def test_workload_the_api_server_rejects_is_reported_not_retried_forever(
    kube: ApiClient, namespace: str
) -> None:
    # The JobQueue schema embeds core/v1's but not every Go check: a label value with a space
    # in a required node affinity passes admission and first fails when the Deployment is applied.
    bad_affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "pool", "operator": "In", "values": ["batch jobs"]}
                        ]
                    }
                ]
            }
        }
    }
    spec = {**secret_spec(), "redis": {"url": "redis://r:6379"}}
    spec["worker"] = {**spec["worker"], "affinity": bad_affinity}
    await create_jobqueue(kube, namespace, "q", spec)

    async def rejected() -> dict[str, Any] | None:
        condition = await ready_condition(kube, namespace, "q")
        return condition if condition and condition["reason"] == "ApplyFailed" else None

    condition = await async_wait_for(rejected, timeout=30, what="ApplyFailed")
    assert "affinity" in condition["message"]
    assert await async_wait_for(
        lambda: _with(event_reasons(kube, namespace, "q"), ("Warning", "ApplyFailed")),
        timeout=30,
        what="Warning event",
    )
    # Fixing the spec heals it.
    await merge_patch_jobqueue(kube, namespace, "q", {"spec": {"worker": {"affinity": None}}})
    await deployment_of(kube, namespace)


async def test_redis_reachability_is_a_condition_with_events(
    kube: ApiClient, namespace: str, redis_server: RedisServer
) -> None:
    spec = {**secret_spec(), "redis": {"url": redis_server.url}}
    await create_jobqueue(kube, namespace, "q", spec)

    async def reachable(status: str) -> dict[str, Any] | None:
        condition = await ready_condition(kube, namespace, "q", "RedisReachable")
        return condition if condition and condition["status"] == status else None

    up = await async_wait_for(lambda: reachable("True"), timeout=30, what="RedisReachable=True")
    assert up["reason"] == "RedisAnswered"
    assert f"127.0.0.1:{redis_server.port}" in up["message"]

    redis_server.stop()
    await merge_patch_jobqueue(kube, namespace, "q", {"spec": {"worker": {"maxJobs": 5}}})
    down = await async_wait_for(lambda: reachable("False"), timeout=30, what="RedisReachable=False")
    assert down["reason"] == "RedisUnreachable"
    assert await async_wait_for(
        lambda: _with(event_reasons(kube, namespace, "q"), ("Warning", "RedisUnreachable")),
        timeout=30,
        what="Warning event",
    )

    redis_server.start()
    await merge_patch_jobqueue(kube, namespace, "q", {"spec": {"worker": {"maxJobs": 6}}})
    await async_wait_for(lambda: reachable("True"), timeout=30, what="RedisReachable=True again")
    assert await async_wait_for(
        lambda: _with(event_reasons(kube, namespace, "q"), ("Normal", "RedisAnswered")),
        timeout=30,
        what="Normal event",
    )


async def test_redis_password_from_a_secret_never_shows(
    kube: ApiClient, namespace: str, operator: OperatorProcess, redis_server: RedisServer
) -> None:
    """The URL's password is read from the Secret and used, and appears nowhere: not in the
    JobQueue, its status, its Deployment, an Event, the operator's log or its metrics."""
    password = "s3cr3t-in-the-secret"
    redis_server.set_password(password)
    url = f"redis://:{password}@127.0.0.1:{redis_server.port}/0"
    secret = V1Secret(metadata=V1ObjectMeta(name="redis-credentials"), string_data={"url": url})
    await CoreV1Api(kube).create_namespaced_secret(namespace, secret)
    await create_jobqueue(kube, namespace, "q", secret_spec())

    async def answered() -> dict[str, Any] | None:
        condition = await ready_condition(kube, namespace, "q", "RedisReachable")
        return condition if condition and condition["status"] == "True" else None

    # Reachable: the operator really authenticated with the password from the Secret.
    condition = await async_wait_for(answered, timeout=30, what="RedisReachable=True")
    assert f"127.0.0.1:{redis_server.port}/0" in condition["message"]
    jq = await get_path(kube, f"/apis/arqfleet.io/v1alpha1/namespaces/{namespace}/jobqueues/q")
    deployment = await get_deployment(kube, namespace, "q-worker")
    events = await CoreV1Api(kube).list_namespaced_event(namespace)
    for where, text in [
        ("the JobQueue", json.dumps(jq)),
        ("the Deployment", json.dumps(deployment)),
        ("Events", " ".join(e.message or "" for e in events.items)),
        ("the operator log", operator.log()),
        ("the metrics", operator.metrics()),
    ]:
        assert password not in text, where


async def test_operator_metrics_pass_promtool_and_carry_no_secret(
    kube: ApiClient, namespace: str, operator: OperatorProcess, redis_server: RedisServer
) -> None:
    await create_jobqueue(
        kube, namespace, "q", {**secret_spec(), "redis": {"url": redis_server.url}}
    )

    async def scaled() -> bool:
        return 'arqfleet_replicas_desired{jobqueue="q",namespace="' + namespace in (
            operator.metrics()
        )

    await async_wait_for(scaled, timeout=30, what="per-queue metrics")
    text = operator.metrics()
    checked = await asyncio.to_thread(
        subprocess.run,
        [str(promtool_binary()), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for name in (
        "arqfleet_probe_duration_seconds_bucket",
        "arqfleet_redis_up",
        "arqfleet_queue_ready_jobs",
    ):
        assert name in text
    assert f"127.0.0.1:{redis_server.port}" not in text  # Redis is named by a hash, never a URL


async def test_a_password_stored_before_the_rule_never_reaches_status_events_or_logs(
    kube: ApiClient, kube_crds: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    """A JobQueue stored while the CRD lacked its no-password rule (an older CRD, or a client
    that skipped admission) makes the models refuse the spec: the error names the field and
    never quotes the value."""
    password = "hunter2-in-the-url"
    crd_path = REPO_ROOT / "crds" / "jobqueues.arqfleet.io.yaml"
    original = yaml.safe_load(crd_path.read_text())
    older = copy.deepcopy(original)
    redis_schema = older["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]["redis"]
    redis_schema["x-kubernetes-validations"] = [
        rule
        for rule in redis_schema["x-kubernetes-validations"]
        if "password" not in rule["message"]
    ]
    body = {**secret_spec(), "redis": {"url": f"redis://:{password}@redis:6379/0"}}
    apply = ("apply", "--server-side", "--force-conflicts", "-f", "-")
    kubectl(kube_crds, *apply, stdin=json.dumps(older))
    try:

        async def stored() -> bool:
            try:
                await create_jobqueue(kube, namespace, "leaky", body)
            except ApiException as error:
                if error.status == 422:
                    return False  # the API server has not picked up the older CRD yet
                raise
            return True

        await async_wait_for(stored, timeout=30, what="the JobQueue stored under the older CRD")
    finally:
        kubectl(kube_crds, *apply, stdin=json.dumps(original))

    async def invalid() -> dict[str, Any] | None:
        condition = await ready_condition(kube, namespace, "leaky")
        return condition if condition and condition["reason"] == "InvalidSpec" else None

    condition = await async_wait_for(invalid, timeout=30, what="Ready=False InvalidSpec")
    assert "spec.redis" in condition["message"]
    assert "must not contain a password" in condition["message"]
    jq = await get_path(kube, f"/apis/arqfleet.io/v1alpha1/namespaces/{namespace}/jobqueues/leaky")
    assert password not in json.dumps((jq or {}).get("status"))
    events = await CoreV1Api(kube).list_namespaced_event(namespace)
    assert events.items
    assert all(password not in (event.message or "") for event in events.items)
    assert password not in operator.log()


async def test_a_deleted_jobqueue_leaves_no_metric_series(
    kube: ApiClient, namespace: str, operator: OperatorProcess, redis_server: RedisServer
) -> None:
    await create_jobqueue(
        kube, namespace, "gone", {**secret_spec(), "redis": {"url": redis_server.url}}
    )
    series = f'jobqueue="gone",namespace="{namespace}"'

    async def exported() -> bool:
        return f"arqfleet_queue_ready_jobs{{{series}}}" in operator.metrics()

    await async_wait_for(exported, timeout=30, what="the JobQueue's series")
    await CustomObjectsApi(kube).delete_namespaced_custom_object(
        models.API_GROUP, models.API_VERSION, namespace, models.PLURAL, "gone"
    )

    async def forgotten() -> bool:
        return series not in operator.metrics()

    # Every per-queue series (queue, replicas, Redis reachability, scale events) goes with it.
    await async_wait_for(forgotten, timeout=30, what="the series dropped")
