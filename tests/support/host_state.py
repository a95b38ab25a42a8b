"""What a local node run could leave on this machine, as a snapshot to compare before and after.

Processes of the node's commands (zombies too), mounts, network namespaces, links, addresses and
routes, iptables rules, cgroups in every hierarchy, the host paths kubelet/containerd/CNI use by
default (and the listings of their parents), and the sysctls the kubelet, kube-proxy or CNI
may change.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from pathlib import Path

import nodehost

NODE_COMMANDS = frozenset(
    {
        "containerd",
        nodehost.SHIM,
        "kubelet",
        "kube-scheduler",
        "subreaper",
        "pause",
        "netcheck",
        "runc",
        "cri-teardown",
        "kube-proxy",
        "apirelay",
    }
)
WATCHED_PATHS = (
    "/var/lib/kubelet",
    "/var/lib/cni",
    "/var/lib/containerd",
    "/var/log/containers",
    "/var/log/pods",
    "/usr/libexec/kubernetes",
    "/run/containerd",
    "/run/nri",
    "/run/netns",
    "/run/arqfleet-node",
    "/opt/containerd",
    "/opt/cni",
    "/etc/cni",
    "/etc/containerd",
    "/etc/kubernetes",
)
IPTABLES_SAVE = ("iptables-save", "ip6tables-save", "iptables-legacy-save", "ip6tables-legacy-save")
LISTED_DIRS = ("/var/lib", "/var/log", "/usr/libexec", "/run", "/opt", "/etc")
SYSCTL_DIRS = (
    "/proc/sys/net/ipv4/conf/all",
    "/proc/sys/net/ipv4/conf/default",
    "/proc/sys/net/ipv6/conf/all",
    "/proc/sys/net/ipv6/conf/default",
    "/proc/sys/net/bridge",
    "/proc/sys/kernel/keys",
)
# What kube-proxy sets unless configured not to (hack/nodeservices.py): the conntrack table's
# size and timeouts (not the whole directory: its counters change with any traffic).
CONNTRACK_SYSCTLS = tuple(
    f"net/netfilter/nf_conntrack_{knob}"
    for knob in (
        "max",
        "tcp_timeout_established",
        "tcp_timeout_close_wait",
        "tcp_be_liberal",
        "udp_timeout",
        "udp_timeout_stream",
    )
)

Snapshot = dict[str, object]


def snapshot() -> Snapshot:
    return {
        "processes": _node_processes(),
        "mounts": sorted(
            line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
        ),
        "netns": _net_namespaces(),
        "links": _run("ip", "-o", "link"),
        "addresses": _run("ip", "-o", "addr"),
        "routes": _run("ip", "route", "show", "table", "all"),
        "iptables": [r for c in IPTABLES_SAVE for r in _rules(c)],
        "cgroups": _cgroups(),
        "paths": {path: _tree(Path(path)) for path in WATCHED_PATHS},
        # A node's work directory (tempfile's default place) goes with it too.
        "workdirs": sorted(str(p) for p in Path(tempfile.gettempdir()).glob("arqfleet-node-*")),
        "listings": {d: sorted(os.listdir(d)) for d in LISTED_DIRS if os.path.isdir(d)},
        "sysctls": _sysctls(),
    }


def differences(before: Snapshot, after: Snapshot) -> dict[str, tuple[object, object]]:
    return {key: (before[key], after[key]) for key in before if before[key] != after[key]}


def _run(*argv: str) -> list[str]:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout
    return sorted(out.splitlines())


def _rules(command: str) -> list[str]:
    try:
        out = subprocess.run([command], capture_output=True, text=True, timeout=30).stdout
    except FileNotFoundError:
        return []
    # Comments carry the time of the dump; counters change with unrelated traffic.
    return [line.split(" [")[0] for line in out.splitlines() if not line.startswith("#")]


def _node_processes() -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            argv0 = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            comm = (proc / "comm").read_text().strip()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            name = os.path.basename(argv0) or comm  # a zombie has no command line
            if name in NODE_COMMANDS or comm in NODE_COMMANDS or comm == nodehost.SHIM[:15]:
                found.append(f"{proc.name} {name} {state}")
    return sorted(found)


def _net_namespaces() -> list[str]:
    spaces = set()
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit():
                spaces.add(os.readlink(proc / "ns" / "net"))
    return sorted(spaces)


def _cgroups() -> list[str]:
    found = []
    for mount in nodehost.cgroup_mounts():
        for directory, _, _ in os.walk(mount):
            found.append(directory)
    return sorted(found)


# podman (the containers tier, or another session on this machine) keeps its CNI config and a
# lock file that comes and goes in /etc/cni/net.d; the node never writes there.
PODMAN_FILES = ("net.d/cni.lock", "net.d/87-podman-bridge.conflist")


def _tree(path: Path) -> list[str] | None:
    if not path.exists():
        return None
    found = (str(p.relative_to(path)) for p in path.rglob("*"))
    return sorted(name for name in found if name not in PODMAN_FILES)


def _sysctls() -> dict[str, str]:
    names = (*nodehost.SYSCTLS, "net/ipv4/ip_forward")  # the node must not turn it on either
    values = {name: nodehost.read_sysctl(name) for name in names}
    for name in CONNTRACK_SYSCTLS:
        with contextlib.suppress(OSError):
            values[name] = nodehost.read_sysctl(name)
    for directory in SYSCTL_DIRS:
        if not os.path.isdir(directory):
            continue
        for entry in sorted(Path(directory).iterdir()):
            with contextlib.suppress(OSError):
                values[str(entry)] = entry.read_text().strip()
    return values
