"""The client tools the tests and the demo use are real and talk to the local cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from localcluster import ControlPlane
from tests.support.kube import kubectl

pytestmark = pytest.mark.cluster


def test_kubectl_and_server_versions_are_within_skew(control_plane: ControlPlane) -> None:
    versions = json.loads(kubectl(control_plane, "version", "-o", "json").stdout)
    client, server = versions["clientVersion"], versions["serverVersion"]
    assert server["gitVersion"] == "v1.36.3"  # the stamped build from hack/build-control-plane
    assert abs(int(client["minor"]) - int(server["minor"])) <= 1


def test_helm_from_the_wheel_reaches_the_cluster(control_plane: ControlPlane) -> None:
    helm = Path(sys.executable).parent / "helm"
    result = subprocess.run(
        [
            str(helm),
            "list",
            "--all-namespaces",
            "--output",
            "json",
            "--kubeconfig",
            str(control_plane.kubeconfig),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(result.stdout) == []
