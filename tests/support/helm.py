"""The real helm binary (installed beside the venv's python by hack/install-helm) on the chart."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from localcluster import ControlPlane
from tests.support.kube import REPO_ROOT

CHART = REPO_ROOT / "charts" / "arqfleet"


def helm_binary() -> str:
    beside = Path(sys.executable).parent / "helm"
    if not beside.exists():
        raise RuntimeError("helm not found: run hack/setup (hack/install-helm)")
    return str(beside)


def helm(
    plane: ControlPlane | None, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HELM_CACHE_HOME": "/tmp/arqfleet-helm-cache"}
    if plane is not None:
        env["KUBECONFIG"] = str(plane.kubeconfig)
    return subprocess.run(
        [helm_binary(), *args], capture_output=True, text=True, check=check, env=env, timeout=120
    )
