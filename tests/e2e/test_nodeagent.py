"""The node agent's kubelet contract, with hand-written pods and small local commands.

The worker tests exercise the happy path through the operator; these pin down what they rely on:
SIGKILL after the grace period, liveness restarts, terminal phases with the message as
terminationMessagePolicy decides, and env resolution with the one-host port remap.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient, CoreV1Api

from tests.support.nodeagent_process import NodeAgentProcess, host_ports
from tests.support.operator_checks import get_path
from tests.support.waiting import async_wait_for

pytestmark = pytest.mark.cluster


# The test namespaces enforce Pod Security "restricted"; these pods pass it as any would.
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}
RESTRICTED_POD = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def pod(name: str, container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    main = {"name": "main", "image": "none", "securityContext": RESTRICTED_CONTAINER, **container}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"securityContext": RESTRICTED_POD, "containers": [main], **spec},
    }


async def create(api: ApiClient, namespace: str, plural: str, body: dict[str, Any]) -> None:
    """POST a plain-JSON object (the typed client wants its model classes)."""
    await api.call_api(
        f"/api/v1/namespaces/{namespace}/{plural}",
        "POST",
        header_params={"Content-Type": "application/json", "Accept": "application/json"},
        body=body,
        response_types_map={201: "object"},
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )


async def get_pod(api: ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    return await get_path(api, f"/api/v1/namespaces/{namespace}/pods/{name}")


async def wait_pod(api: ApiClient, namespace: str, name: str, check: Any, what: str) -> Any:
    async def probe() -> Any:
        found = await get_pod(api, namespace, name)
        return check(found) if found else None

    return await async_wait_for(probe, timeout=20, what=f"pod {name}: {what}")


def container_status(found: dict[str, Any]) -> dict[str, Any]:
    statuses = (found.get("status") or {}).get("containerStatuses") or [{}]
    return dict(statuses[0])


async def test_a_process_ignoring_sigterm_is_killed_after_the_grace_period(
    kube: ApiClient, namespace: str, node_agent: NodeAgentProcess
) -> None:
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    body = pod("stubborn", {"command": ["python", "-c", stubborn]}, terminationGracePeriodSeconds=2)
    await create(kube, namespace, "pods", body)
    await wait_pod(kube, namespace, "stubborn", lambda p: container_status(p).get("ready"), "ready")

    deleted_at = time.monotonic()
    await CoreV1Api(kube).delete_namespaced_pod("stubborn", namespace)

    async def gone() -> bool:
        return await get_pod(kube, namespace, "stubborn") is None

    await async_wait_for(gone, timeout=15, what="the stubborn pod to go")
    assert time.monotonic() - deleted_at >= 2  # the grace period was honoured...
    assert f"{namespace}/stubborn: SIGKILL to main after 2s" in node_agent.log()  # ...then ended


async def test_a_failing_liveness_probe_restarts_the_container(
    kube: ApiClient, namespace: str, node_agent: NodeAgentProcess
) -> None:
    # A real HTTP server on the agent's loopback port for containerPort 8080 ($(VAR) expansion
    # of the remapped ARQFLEET_HTTP_PORT); "/" answers 200, "/missing" 404.
    container = {
        "command": ["python", "-m", "http.server"],
        "args": ["$(ARQFLEET_HTTP_PORT)", "--bind", "127.0.0.1"],
        "env": [{"name": "ARQFLEET_HTTP_PORT", "value": "8080"}],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
        "livenessProbe": {
            "httpGet": {"path": "/missing", "port": 8080},
            "initialDelaySeconds": 1,
            "periodSeconds": 1,
            "failureThreshold": 2,
        },
    }
    body = pod("unhealthy", container, terminationGracePeriodSeconds=5)
    await create(kube, namespace, "pods", body)

    def restarted(found: dict[str, Any]) -> dict[str, Any] | None:
        status = container_status(found)
        return status if status.get("restartCount", 0) >= 1 else None

    status = await wait_pod(kube, namespace, "unhealthy", restarted, "restarted")
    terminated = status["lastState"]["terminated"]
    assert terminated["exitCode"] == 128 + 15  # SIGTERM, as a runtime reports a signal
    found = await get_pod(kube, namespace, "unhealthy")
    assert found is not None
    assert host_ports(found)["http"] != 8080
    assert "liveness probe failed 2 times: restarting main" in node_agent.log()
    # It was serving on the remapped port: the readiness probe passed before the restart.
    assert '"GET / HTTP/1.1" 200' in node_agent.pod_log("unhealthy")


async def test_restart_policy_never_ends_failed_and_the_message_follows_the_policy(
    kube: ApiClient, namespace: str, node_agent: NodeAgentProcess
) -> None:
    # As kubelet: the message comes from the termination message file (which the agent never
    # has), or under FallbackToLogsOnError from the log tail, and then only for an error exit.
    failing = "import sys; print('cannot go on', file=sys.stderr); sys.exit(3)"
    fine = "print('all done')"
    fallback = {"terminationMessagePolicy": "FallbackToLogsOnError"}
    pods: dict[str, dict[str, Any]] = {
        "file": {"command": ["python", "-c", failing]},  # the API server defaults "File"
        "fallback": {"command": ["python", "-c", failing], **fallback},
        "fallback-ok": {"command": ["python", "-c", fine], **fallback},
    }
    for name, container in pods.items():
        await create(kube, namespace, "pods", pod(name, container, restartPolicy="Never"))

    def ended(found: dict[str, Any]) -> dict[str, Any] | None:
        return found if found["status"].get("phase") in {"Failed", "Succeeded"} else None

    found = {name: await wait_pod(kube, namespace, name, ended, "ended") for name in pods}
    assert found["file"]["spec"]["containers"][0]["terminationMessagePolicy"] == "File"
    terminated = {name: container_status(p)["state"]["terminated"] for name, p in found.items()}
    assert [found[name]["status"]["phase"] for name in pods] == ["Failed", "Failed", "Succeeded"]
    assert [terminated[name]["exitCode"] for name in pods] == [3, 3, 0]
    assert "message" not in terminated["file"]
    assert terminated["fallback"]["message"] == "cannot go on"
    assert "message" not in terminated["fallback-ok"]
    assert all(container_status(p)["restartCount"] == 0 for p in found.values())


async def test_env_from_values_secrets_config_maps_and_the_downward_api(
    kube: ApiClient, namespace: str, node_agent: NodeAgentProcess
) -> None:
    secret = {"metadata": {"name": "creds"}, "stringData": {"url": "redis://x", "user": "u"}}
    await create(kube, namespace, "secrets", secret)
    config_map = {"metadata": {"name": "settings"}, "data": {"level": "debug"}}
    await create(kube, namespace, "configmaps", config_map)
    names = ["POD", "NS", "IP", "URL", "LEVEL", "S_user", "GREETING", "LABEL"]
    script = f"import os; print(' '.join(os.environ.get(n, '-') for n in {names!r}))"
    container = {
        "command": ["python", "-c", script],
        "envFrom": [{"secretRef": {"name": "creds"}, "prefix": "S_"}],
        "env": [
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "URL", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "url"}}},
            {
                "name": "LEVEL",
                "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "level"}},
            },
            {"name": "GREETING", "value": "hello-$(POD)"},
            {"name": "LABEL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        ],
    }
    body = pod("env", container, restartPolicy="Never")
    body["metadata"]["labels"] = {"app": "demo"}
    await create(kube, namespace, "pods", body)

    await wait_pod(
        kube, namespace, "env", lambda p: p["status"].get("phase") == "Succeeded", "Succeeded"
    )
    expected = f"env {namespace} 127.0.0.1 redis://x debug u hello-env demo"
    assert node_agent.pod_log("env").strip() == expected
