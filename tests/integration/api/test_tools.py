"""The client tools the tests and the demo use are real: kubectl and helm talk to the local
cluster; promtool (from Debian's prometheus package, via hack/setup) judges exposition text."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from localcluster import ControlPlane
from tests.support.kube import kubectl
from tests.support.prometheus_tools import prometheus_binary, promtool_binary

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


VALID_EXPOSITION = """\
# HELP arqfleet_worker_jobs_total Jobs finished, by outcome.
# TYPE arqfleet_worker_jobs_total counter
arqfleet_worker_jobs_total{outcome="success"} 3
arqfleet_worker_jobs_total{outcome="failure"} 1
# HELP arqfleet_worker_in_flight_jobs Jobs running now.
# TYPE arqfleet_worker_in_flight_jobs gauge
arqfleet_worker_in_flight_jobs 2
"""


def promtool(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool_binary()), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_promtool_checks_exposition_text_from_stdin() -> None:
    version = promtool("--version")
    assert version.returncode == 0, version.stderr
    assert (version.stdout + version.stderr).startswith("promtool, version 2.")
    prometheus = subprocess.run(
        [str(prometheus_binary()), "--version"], capture_output=True, text=True, timeout=60
    )
    assert prometheus.returncode == 0, prometheus.stderr

    valid = promtool("check", "metrics", stdin=VALID_EXPOSITION)
    assert valid.returncode == 0, valid.stdout + valid.stderr

    not_a_number = VALID_EXPOSITION.replace("in_flight_jobs 2", "in_flight_jobs two")
    invalid = promtool("check", "metrics", stdin=not_a_number)
    assert invalid.returncode != 0
    assert 'expected float as value, got "two"' in invalid.stdout + invalid.stderr
