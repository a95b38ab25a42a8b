"""The real `arqfleet-operator` as a subprocess against the local control plane.

It runs as the user "arqfleet-operator", bound only to the RBAC rules arqfleet ships, so every
operator test is also a test that those rules are enough.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arqfleet.operator import rbac
from localcluster import ControlPlane, free_port, stop_process
from tests.support.kube import kubectl
from tests.support.waiting import wait_for

OPERATOR_USER = "arqfleet-operator"


def bind_operator_rbac(
    plane: ControlPlane, namespaces: list[str] | None = None, *, user: str = OPERATOR_USER
) -> Path:
    """Apply the shipped RBAC with `user` as subject; return that user's kubeconfig."""
    objects = rbac.namespaced(namespaces, name=user) if namespaces else rbac.clusterwide(name=user)
    for obj in objects:
        if obj["kind"].endswith("Binding"):
            obj["subjects"] = [
                {"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}
            ]
    kubectl(
        plane,
        "apply",
        "--server-side",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
    )
    return plane.user_kubeconfig(user)


@dataclass
class OperatorProcess:
    plane: ControlPlane
    kubeconfig: Path
    namespaces: list[str] = field(default_factory=list)
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    liveness_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    popen: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        if self.log_path is None:
            # Outside the control plane's workdir, so the log survives it for a post-mortem.
            logs = Path(tempfile.gettempdir()) / "arqfleet-operator-logs"
            logs.mkdir(exist_ok=True)
            self.log_path = logs / f"operator-{os.getpid()}-{self.liveness_port}.log"
        argv = [
            sys.executable,
            "-m",
            "arqfleet.operator",
            "--kubeconfig",
            str(self.kubeconfig),
            "--liveness-port",
            str(self.liveness_port),
        ]
        for namespace in self.namespaces:
            argv += ["--namespace", namespace]
        env = {
            **os.environ,
            "ARQFLEET_METRICS_PORT": str(self.metrics_port),
            "ARQFLEET_LIVENESS_HOST": "127.0.0.1",
            # Tests fix a missing Secret and watch the condition clear: look again soon.
            "ARQFLEET_SECRET_RECHECK_SECONDS": "1",
            "ARQFLEET_DISCOVERY_CACHE_SECONDS": "0",
            # Tests read status.queue right after a change: no rate limit on those writes.
            "ARQFLEET_QUEUE_STATUS_SECONDS": "0",
            **self.env,
        }
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        wait_for(self._live, timeout=timeout, what=f"operator liveness (log: {self.log_path})")

    def _live(self) -> bool:
        assert self.popen is not None
        if self.popen.poll() is not None:
            raise RuntimeError(f"operator exited with {self.popen.returncode}:\n{self.log()}")
        try:
            url = f"http://127.0.0.1:{self.liveness_port}/healthz"
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text: str = response.read().decode()
            return text

    def stop(self, timeout: float = 30) -> int:
        if self.popen is None:
            return 0
        code = stop_process(self.popen, timeout)
        self.popen = None
        return code


def reconcile_durations_ms(log: str) -> list[float]:
    """The "reconciled ns/name (cause) in N ms" figures the operator logs."""
    durations = []
    for line in log.splitlines():
        if "reconciled " in line and " ms: " in line:
            durations.append(float(line.rsplit(" in ", 1)[1].split(" ms", 1)[0]))
    return durations


def audited_calls(plane: ControlPlane, user: str = OPERATOR_USER) -> set[tuple[str, str, str]]:
    """(group, resource[/subresource], verb) of every request `user` made, per the audit log."""
    calls = set()
    for event in plane.audit_events(user):
        ref: dict[str, Any] = event.get("objectRef") or {}  # type: ignore[assignment]
        if not ref.get("resource"):
            continue  # non-resource URLs (discovery, /version) need no RBAC rule of ours
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        calls.add((ref.get("apiGroup", ""), resource, str(event["verb"])))
    return calls
