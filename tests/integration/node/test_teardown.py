"""A node run leaves the machine as it found it, after an orderly stop and after a crash.

Both runs have services (kube-proxy, the API server relay): the most a run changes."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import nodehost
from localcluster import ControlPlane, is_running
from localnode import Node
from tests.support.host_state import differences, snapshot
from tests.support.node_pods import create_pod, wait_phase
from tests.support.waiting import wait_for


def test_a_stopped_node_leaves_the_machine_as_it_found_it(node_plane: ControlPlane) -> None:
    before = snapshot()
    node = Node(node_plane, services=True).start()
    try:
        create_pod(node_plane, node, "teardown-sleeper")
        wait_phase(node_plane, "teardown-sleeper", "Running")
        during = snapshot()
        # The run did change the machine: its bridge, a shim, mounts, a network namespace,
        # kube-proxy's iptables chains.
        assert {"processes", "mounts", "netns", "links", "cgroups", "iptables"} <= set(
            differences(before, during)
        )
    finally:
        node.stop()
    assert differences(before, snapshot()) == {}


def test_a_bring_up_after_a_crashed_run_starts_clean(node_plane: ControlPlane) -> None:
    before = snapshot()
    crashed = Node(node_plane, services=True).start()
    create_pod(node_plane, crashed, "crash-sleeper")
    wait_phase(node_plane, "crash-sleeper", "Running")
    shims = nodehost._shim_pids(crashed.record)
    containers = nodehost.cgroup_pids(crashed.record)
    assert shims
    assert containers
    # The crash: the node's daemons die at once; shims, containers and all state stay behind.
    for name in ("kubelet", "kube-scheduler", "kube-proxy", "apirelay", "containerd"):
        os.kill(crashed.record["pids"][name], signal.SIGKILL)
    for process in crashed.processes:
        if process.name != "containerd":  # the subreaper: it lives on, adopting the shims
            process.popen.wait(timeout=10)
    assert all(is_running(pid) for pid in shims + containers)

    fresh = Node(node_plane, services=True).start()
    try:
        # The crashed run is gone: processes, bridge, cgroups, directory.
        wait_for(
            lambda: not any(is_running(p) for p in shims + containers),
            timeout=10,
            what="the crashed run's shims and containers to be gone",
        )
        assert not Path(crashed.workdir).exists()
        assert not Path("/sys/class/net", crashed.record["bridge"]).exists()
        create_pod(node_plane, fresh, "fresh-sleeper")
        wait_phase(node_plane, "fresh-sleeper", "Running")
    finally:
        fresh.stop()
        for process in crashed.processes:  # the subreaper, now that its shims are gone
            with contextlib.suppress(Exception):
                process.popen.wait(timeout=10)
    assert differences(before, snapshot()) == {}
