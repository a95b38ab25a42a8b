"""What every image promises before it runs: a numeric non-root user (a name fails the
kubelet's runAsNonRoot check), an exec-form entrypoint (the process is PID 1 and gets SIGTERM),
OCI labels, no HEALTHCHECK (Kubernetes probes the HTTP endpoints instead) and no compilers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from containerimages import podman

pytestmark = pytest.mark.containers

ENTRYPOINTS = {
    "operator": ["arqfleet-operator"],
    "worker": ["arqfleet-worker"],
    "example": ["arqfleet-worker"],
    "bench": ["arqfleet-worker"],
}


def inspect(tag: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = json.loads(podman("image", "inspect", tag).stdout)
    return found[0]


@pytest.mark.parametrize("name", sorted(ENTRYPOINTS))
def test_image_runs_as_a_numeric_non_root_user_with_an_exec_entrypoint(
    images: dict[str, str], name: str
) -> None:
    config = inspect(images[name])["Config"]
    user, _, group = config["User"].partition(":")
    assert user.isdigit(), config["User"]
    assert group.isdigit(), config["User"]
    assert int(user) != 0
    assert config["Entrypoint"] == ENTRYPOINTS[name]  # exec form: no /bin/sh -c in front
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == f"arqfleet-{name}"
    for label in ("description", "version", "licenses", "base.name"):
        assert labels[f"org.opencontainers.image.{label}"], label
    assert "Healthcheck" not in config


@pytest.mark.parametrize("name", sorted(ENTRYPOINTS))
def test_image_has_no_compiler_and_python_comes_from_the_venv(
    images: dict[str, str], name: str
) -> None:
    script = (
        "for tool in gcc cc c++ g++ clang make ld; do command -v $tool; done;"
        " command -v python3; id -un"
    )
    # No network: it needs none, and podman's default bridge would leave its CNI state in
    # /var/lib/cni and turn on ip_forward for the machine.
    result = podman(
        "run", "--rm", "--network=none", "--entrypoint", "/bin/sh", images[name], "-c", script
    )
    assert result.stdout.split() == ["/venv/bin/python3", "arqfleet"]
