"""The Prometheus Operator's published CRDs (ServiceMonitor, PodMonitor, PrometheusRule), as
hack/fetch-monitoring-crds takes them from the pinned release source through the Go module
proxy: the real ones, so what arqfleet renders is validated by their real schemas."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.kube import REPO_ROOT

KINDS = ("servicemonitors", "podmonitors", "prometheusrules")


def monitoring_crds_dir() -> Path:
    """The cached directory (fetched on first use; hack/setup fetches it too)."""
    fetched = subprocess.run(
        [str(REPO_ROOT / "hack" / "fetch-monitoring-crds")],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return Path(fetched.stdout.strip().splitlines()[-1])


def crd_file(kind: str) -> Path:
    """The published CRD manifest of `kind` (a plural, e.g. "podmonitors")."""
    return monitoring_crds_dir() / f"monitoring.coreos.com_{kind}.yaml"
