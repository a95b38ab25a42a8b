"""hack/nodeagent.py as a subprocess: the kubelet (and scheduler) of one fake node for e2e tests.

Run as a separate process, as a person runs it, so its signal handling and shutdown are tested too.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from localcluster import ControlPlane, stop_process
from tests.support.kube import REPO_ROOT, kubectl
from tests.support.waiting import wait_for

AGENT = REPO_ROOT / "hack" / "nodeagent.py"
PORTS_ANNOTATION = "nodeagent.arqfleet.io/host-ports"


@dataclass
class NodeAgentProcess:
    plane: ControlPlane
    node: str
    workdir: Path
    namespaces: list[str] = field(default_factory=list)
    restart_backoff_seconds: float = 1.0
    popen: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "nodeagent.log"

    @property
    def pod_logs(self) -> Path:
        return self.workdir / "pod-logs"

    def start(self, timeout: float = 30) -> NodeAgentProcess:
        argv = [
            sys.executable,
            str(AGENT),
            "--kubeconfig",
            str(self.plane.kubeconfig),
            "--node-name",
            self.node,
            "--logs-dir",
            str(self.pod_logs),
            "--restart-backoff-seconds",
            str(self.restart_backoff_seconds),
        ]
        for namespace in self.namespaces:
            argv += ["--namespace", namespace]
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._node_ready, timeout=timeout, what=f"node {self.node} Ready")
        return self

    def _node_ready(self) -> bool:
        assert self.popen is not None
        if self.popen.poll() is not None:
            raise AssertionError(f"node agent exited with {self.popen.returncode}:\n{self.log()}")
        found = kubectl(self.plane, "get", "node", self.node, "-o", "json", check=False)
        if found.returncode != 0:
            return False
        conditions = json.loads(found.stdout).get("status", {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def pod_log(self, pod: str) -> str:
        """All logs of every container run of pod `pod` (any namespace), concatenated."""
        return "".join(
            p.read_text(errors="replace") for p in sorted(self.pod_logs.glob(f"*_{pod}_*/*.log"))
        )

    def started_pids(self) -> list[int]:
        """Every container process the agent started, from its log."""
        return [int(pid) for pid in re.findall(r": started \S+ pid (\d+)", self.log())]

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, as a person's Ctrl-C or a service manager would; returns the exit code."""
        if self.popen is None:
            return 0
        code = stop_process(self.popen, timeout)
        self.popen = None
        return code


def host_ports(pod: dict[str, object]) -> dict[str, int]:
    """The agent's containerPort -> loopback port map written on the pod (see hack/nodeagent.py)."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}  # type: ignore[attr-defined]
    raw = annotations.get(PORTS_ANNOTATION)
    return {str(k): int(v) for k, v in json.loads(raw).items()} if raw else {}
