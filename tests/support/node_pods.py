"""Pods on a real local node (hack/localnode.py), through the real kubectl."""

from __future__ import annotations

import json
from typing import Any

from localcluster import ControlPlane
from localnode import Node
from tests.support.kube import kubectl
from tests.support.waiting import wait_for


def create_pod(
    plane: ControlPlane, node: Node, name: str, command: list[str] | None = None
) -> None:
    """A pod of the node's own image (no registry here), scheduled onto `node` by the real
    kube-scheduler: /pause by default, or `command` run once (restartPolicy Never)."""
    container: dict[str, Any] = {"name": "main", "image": node.image, "imagePullPolicy": "Never"}
    if command is not None:
        container["command"] = command
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node.name},
            "restartPolicy": "Always" if command is None else "Never",
            "terminationGracePeriodSeconds": 5,
            "containers": [container],
        },
    }
    kubectl(plane, "create", "-f", "-", stdin=json.dumps(pod))


def pod(plane: ControlPlane, name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(
        kubectl(plane, "-n", "default", "get", "pod", name, "-o", "json").stdout
    )
    return found


def wait_phase(plane: ControlPlane, name: str, phase: str, timeout: float = 30) -> dict[str, Any]:
    """Wait until the pod is in `phase` (and, for Running, all its containers are ready)."""

    def reached() -> dict[str, Any] | None:
        found = pod(plane, name)
        status = found.get("status", {})
        if status.get("phase") in ("Succeeded", "Failed") and status["phase"] != phase:
            raise AssertionError(f"pod {name} is {status['phase']}, not {phase}: {status}")
        if status.get("phase") != phase:
            return None
        if phase == "Running" and not all(
            c.get("ready") for c in status.get("containerStatuses", [])
        ):
            return None
        return found

    return wait_for(reached, timeout=timeout, interval=0.2, what=f"pod {name} to be {phase}")


def termination_message(found: dict[str, Any]) -> str:
    [status] = found["status"]["containerStatuses"]
    message: str = status["state"]["terminated"].get("message", "")
    return message
