"""The machine-wide side of the local node: what a run changes outside its own directory, the
ledger that records it, and the reaper that undoes it, also for a run that crashed.

Outside its work directory a run (hack/localnode.py) changes:
- sysctls the kubelet sets (`SYSCTLS`), whatever the config says;
- host paths that kubelet, containerd and CNI create at fixed places (`SHARED_PATHS`):
  /var/log/containers symlinks, /var/lib/kubelet/device-plugins, /var/lib/cni's result cache,
  /run/containerd/s (shim sockets: a compile-time constant in containerd);
- a cgroup `/arqfleet-node-<id>` in every hierarchy (the kubelet's cgroupRoot: all pods below);
- a bridge `arqn<id>` with the run's own /24 (no masquerade, no route out: see localnode.py);
- processes: containerd (under a subreaper that adopts its shims), kubelet, kube-scheduler,
  and the shims and containers those start.

Runs register in a ledger, /run/arqfleet-node/ledger.json, under an flock (a recorded process
identity includes the boot, so after a reboot every recorded run is dead). The first run to
arrive records the sysctls' values and which shared paths were absent; the last to leave
restores the first and removes the second, so overlapping runs never restore a value another
run still needs. A run whose kubelet
and containerd are gone, or whose owning process died, is dead: the next run to start or stop
reaps it (kills what is left, unmounts, deletes its bridge and cgroups and directory) before
doing anything else, so a bring-up after a crash starts from a clean machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nodeservices
from localcluster import is_ours, is_running
from nodeapi import delete_node

LEDGER_DIR = Path("/run/arqfleet-node")
# What the kubelet sets (pkg/kubelet/cm/container_manager_linux.go setupKernelTunables). Not
# ip_forward: the node never turns it on (its bridge is no CNI gateway), and podman's does, so
# "restoring" it would switch off another tool's forwarding in the middle of its run.
SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
# Created at fixed places whatever the configuration says (see the module docstring).
SHARED_PATHS = (
    "/var/lib/kubelet",
    "/var/log/containers",
    "/var/lib/cni",
    # libcni's result cache, on its own: podman may have made /var/lib/cni (its networks)
    # before the first run, and then only the cache directory is ours to remove.
    "/var/lib/cni/results",
    "/run/containerd",
    # iptables' lock, taken by kube-proxy (hack/nodeservices.py) and by iptables itself.
    "/run/xtables.lock",
)
# Others (podman's CNI networks, its containers' log links) may have moved in since: a run
# removes only its own entries there, and the last run only the directories left empty.
SHARED_WITH_OTHERS = ("/var/lib/cni", "/var/lib/cni/results", "/var/log/containers")
SHIM = "containerd-shim-runc-v2"
# A run that has started neither kubelet nor containerd this long after registering is dead.
STARTING_SECONDS = 120
Record = dict[str, Any]


# -- the ledger --------------------------------------------------------------------------


@contextlib.contextmanager
def _ledger() -> Iterator[dict[str, Any]]:
    """The ledger, locked; written back on exit, or removed with its directory when no run is
    left in it (the last run's `release` has then restored the machine)."""
    while True:
        LEDGER_DIR.mkdir(mode=0o700, exist_ok=True)
        lock = os.open(LEDGER_DIR / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            same = os.fstat(lock).st_ino == os.stat(LEDGER_DIR / "lock").st_ino
        except FileNotFoundError:
            same = False  # the last run removed the directory while we waited: again
        if same:
            break
        os.close(lock)
    try:
        path = LEDGER_DIR / "ledger.json"
        ledger = json.loads(path.read_text()) if path.exists() else {}
        ledger.setdefault("runs", {})
        yield ledger
        if ledger["runs"]:
            path.with_suffix(".partial").write_text(json.dumps(ledger, indent=2))
            path.with_suffix(".partial").replace(path)
        else:
            shutil.rmtree(LEDGER_DIR, ignore_errors=True)
    finally:
        os.close(lock)


def is_alive(record: Record) -> bool:
    """Its owner (if it has one) runs, and so does its kubelet or its containerd (or it is
    still starting them)."""
    owner = record.get("owner")
    if owner is not None and not is_ours(int(owner["pid"]), owner["identity"]):
        return False
    ids, pids = record.get("identities", {}), record.get("pids", {})
    daemons = [name for name in ("kubelet", "containerd") if name in pids]
    if not daemons:
        return time.time() - float(record.get("started", 0)) < STARTING_SECONDS
    return any(is_ours(int(pids[name]), ids.get(name)) for name in daemons)


def register(record: Record) -> None:
    """Add a starting run (reaping dead ones first); give it a free /24 and its bridge."""
    record["started"] = time.time()
    with _ledger() as ledger:
        _reap_dead(ledger)
        if not ledger["runs"]:
            _restore(ledger)  # what a crashed last run changed, before reading "originals"
            ledger["originals"] = {name: read_sysctl(name) for name in SYSCTLS}
            ledger["absent"] = [p for p in SHARED_PATHS if not os.path.lexists(p)]
        if record.get("services"):
            holders = [r["id"] for r in ledger["runs"].values() if r.get("services")]
            if holders:
                raise RuntimeError(
                    f"node run {holders[0]} runs kube-proxy already, and kube-proxy's iptables "
                    "chains are machine-wide: one node with services at a time"
                )
        taken = [r["subnet"] for r in ledger["runs"].values() if r.get("subnet")]
        subnet = _free_subnet(taken)
        record["subnet"] = str(subnet)
        record["gateway"] = str(next(subnet.hosts()))
        ledger["runs"][record["id"]] = record
        _create_bridge(record)


def update(record: Record) -> None:
    """Save a run's record as it gains processes."""
    with _ledger() as ledger:
        ledger["runs"][record["id"]] = record


def release(record: Record) -> None:
    """Reap a run (stopped or not) and, if it was the last, restore the machine."""
    with _ledger() as ledger:
        reap(record)
        ledger["runs"].pop(record["id"], None)
        _reap_dead(ledger)
        if not ledger["runs"]:
            _restore(ledger)


def _reap_dead(ledger: dict[str, Any]) -> None:
    for run_id, record in list(ledger["runs"].items()):
        if not is_alive(record):
            reap(record)
            del ledger["runs"][run_id]


def _restore(ledger: dict[str, Any]) -> None:
    for name, value in ledger.get("originals", {}).items():
        if read_sysctl(name) != value:
            Path("/proc/sys", name).write_text(value)
    for path in ledger.get("absent", []):
        if path in SHARED_WITH_OTHERS:  # only what is left of ours: empty directories
            for directory, _, _ in sorted(os.walk(path), key=lambda w: -len(w[0])):
                with contextlib.suppress(OSError):
                    os.rmdir(directory)
        elif os.path.isfile(path):
            with contextlib.suppress(OSError):
                os.unlink(path)
        else:
            shutil.rmtree(path, ignore_errors=True)


def read_sysctl(name: str) -> str:
    return Path("/proc/sys", name).read_text().strip()


# -- reaping one run ---------------------------------------------------------------------


def reap(record: Record, timeout: float = 20) -> None:
    """Undo everything of one run, whatever state it is in; idempotent."""
    deadline = time.monotonic() + timeout
    workdir = Path(record["workdir"])
    # Containers first (the shims reap them), then the shims, then the daemons.
    _kill_until_gone(lambda: cgroup_pids(record), deadline)
    _kill_until_gone(lambda: _shim_pids(record), deadline)
    _kill_until_gone(lambda: _recorded_pids(record), deadline)
    delete_node(record["api"], record["node"])  # once no kubelet can register it again
    nodeservices.cleanup(record)  # once no kube-proxy can program its chains again
    for mountpoint in sorted(_mounts_under(workdir), key=len, reverse=True):
        subprocess.run(["umount", "-l", mountpoint], capture_output=True, timeout=10, check=False)
    _delete_bridge(record, deadline)
    _remove_cgroups(record, deadline)
    _remove_shared_leftovers(record)
    shutil.rmtree(workdir, ignore_errors=True)


def _kill_until_gone(pids: Any, deadline: float) -> None:
    while True:
        alive = [pid for pid in pids() if is_running(pid)]
        if not alive or time.monotonic() > deadline:
            return
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
        for pid in alive:  # our own children (a run of this process) must not stay zombies
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


def _recorded_pids(record: Record) -> list[int]:
    ids = record.get("identities", {})
    return [int(pid) for name, pid in record.get("pids", {}).items() if is_ours(pid, ids.get(name))]


def _shim_pids(record: Record) -> list[int]:
    """containerd-shim-runc-v2 processes started for this run's containerd."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if os.path.basename(argv[0]).decode(errors="replace") != SHIM:
            continue
        with contextlib.suppress(ValueError, IndexError):
            if argv[argv.index(b"-address") + 1].decode() == record["containerd_socket"]:
                found.append(int(proc.name))
    return found


def cgroup_mounts() -> list[Path]:
    """Every cgroup (v1) and cgroup2 mount point."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" - ")[1].split()
        if fields[0] in ("cgroup", "cgroup2"):
            mounts.append(Path(_unescape(line.split()[4])))
    return mounts


def _cgroup_dirs(record: Record) -> list[Path]:
    name = record["cgroup"].strip("/")
    return [mount / name for mount in cgroup_mounts() if (mount / name).is_dir()]


def cgroup_pids(record: Record) -> list[int]:
    """Every process in the run's cgroups: its containers' (and their shims' children)."""
    pids: set[int] = set()
    for top in _cgroup_dirs(record):
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in procs.read_text().split())
    return sorted(pids)


def _remove_cgroups(record: Record, deadline: float) -> None:
    for top in _cgroup_dirs(record):
        while top.exists():
            for directory, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
                with contextlib.suppress(OSError):
                    os.rmdir(directory)
            if not top.exists() or time.monotonic() > deadline:
                break
            time.sleep(0.05)


def _unescape(path: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    for code in ("040", "011", "012", "134"):
        path = path.replace("\\" + code, chr(int(code, 8)))
    return path


def _mounts_under(directory: Path) -> list[str]:
    prefix = str(directory).rstrip("/") + "/"
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mountpoint = _unescape(line.split()[4])
        if mountpoint == str(directory) or mountpoint.startswith(prefix):
            found.append(mountpoint)
    return found


def _remove_shared_leftovers(record: Record) -> None:
    """This run's entries in the shared paths (the last run's `_restore` removes the rest)."""
    workdir = str(record["workdir"])
    with contextlib.suppress(OSError):
        for link in Path("/var/log/containers").iterdir():
            if link.is_symlink() and os.readlink(link).startswith(workdir):
                link.unlink()
    # libcni caches each ADD's result until the DEL: the run's bridge network, and the
    # loopback network containerd sets up in every sandbox (lost when containerd was killed).
    sandboxes = {
        path.name
        for path in Path(workdir, "containerd").glob("*/io.containerd.grpc.v1.cri/sandboxes/*")
    }
    with contextlib.suppress(OSError):
        for result in Path("/var/lib/cni/results").iterdir():
            loopback_of = result.name.removeprefix("cni-loopback-").split("-")[0]
            if result.name.startswith(f"{record['network']}-") or loopback_of in sandboxes:
                result.unlink()
    # A shim's socket outlives a killed shim: remove every one nobody listens on any more.
    with contextlib.suppress(OSError):
        listening = {
            line.split()[-1]
            for line in Path("/proc/net/unix").read_text().splitlines()[1:]
            if len(line.split()) >= 8
        }
        for socket in Path("/run/containerd/s").iterdir():
            if str(socket) not in listening:
                socket.unlink()


# -- the run's network -------------------------------------------------------------------


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=check)


def _free_subnet(taken: list[str]) -> ipaddress.IPv4Network:
    """A random 10.x.y.0/24 that no run, address or route on this machine overlaps."""
    used = [ipaddress.ip_network(s) for s in taken]
    for entry in json.loads(_ip("-j", "-4", "addr").stdout):
        for addr in entry.get("addr_info", []):
            used.append(ipaddress.ip_network(f"{addr['local']}/{addr['prefixlen']}", strict=False))
    for route in json.loads(_ip("-j", "-4", "route").stdout):
        if route["dst"] != "default":
            used.append(ipaddress.ip_network(route["dst"], strict=False))
    for _ in range(1000):
        # 10.64-10.254: clear of the control plane's service range (10.0.0.0/24).
        candidate = ipaddress.IPv4Network(
            f"10.{random.randint(64, 254)}.{random.randint(0, 255)}.0/24"
        )
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise RuntimeError("no free 10.x.y.0/24 for the node's pod network")


def _create_bridge(record: Record) -> None:
    """The run's bridge, holding the gateway address. The CNI bridge plugin attaches pods to it
    but is not its gateway (isGateway would turn on ip_forward): pods reach the host on the
    bridge and nothing beyond it, as they have no default route."""
    bridge, prefix = record["bridge"], ipaddress.ip_network(record["subnet"]).prefixlen
    _ip("link", "add", "name", bridge, "type", "bridge")
    _ip("addr", "add", f"{record['gateway']}/{prefix}", "dev", bridge)
    _ip("link", "set", bridge, "up")


def _delete_bridge(record: Record, deadline: float) -> None:
    bridge = record["bridge"]
    # Veths whose namespace is gone disappear with it; any other port goes first.
    ports = _ip("-j", "link", "show", "master", bridge, check=False)
    if ports.returncode == 0:
        for port in json.loads(ports.stdout or "[]"):
            _ip("link", "delete", port["ifname"], check=False)
    while _ip("link", "show", bridge, check=False).returncode == 0:
        _ip("link", "delete", bridge, check=False)
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)
