"""The real node tier: kubelet + containerd + runc + CNI on this machine, on a control plane of
its own (no controllers: its pods are created directly), apart from the e2e tier's node on the
session's control plane."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from localcluster import ControlPlane
from localnode import Node


@pytest.fixture(scope="package")
def node_plane() -> Iterator[ControlPlane]:
    """etcd + kube-apiserver alone: pods here are created directly, so no controllers."""
    if os.geteuid() != 0:
        pytest.skip("a real node needs root (mounts, cgroups, network namespaces)")
    plane = ControlPlane()
    try:
        plane.start()
        yield plane
    finally:
        plane.cleanup()


@pytest.fixture(scope="module")
def node(node_plane: ControlPlane) -> Iterator[Node]:
    """A node per module, with services (kube-proxy): the teardown tests start and stop their
    own around snapshots."""
    started = Node(node_plane, services=True).start()
    yield started
    started.stop()
