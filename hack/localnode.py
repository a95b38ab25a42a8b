"""A real node for the local control plane: containerd + runc + CNI, kubelet and kube-scheduler.

    node = Node(plane); node.start()    # blocks until the Node is Ready and schedulable
    ...                                 # pods run in real containers from node.image
    node.stop()                         # the machine as it was before start()

Everything of one run is its own: free ports, a unique node name, a per-run /24 on a bridge it
creates, containerd's root/state/socket, the kubelet's root, certs and pod logs, and a cgroup
root, all under one work directory. Pods reach the host at the bridge's gateway address (also
the node's InternalIP and every pod's hostIP), and nothing further: there is no masquerade and
pods have no default route. With `services=True` pods also reach ClusterIPs, the API server's
among them, through kube-proxy (hack/nodeservices.py). The machine-wide part (sysctls the
kubelet changes, fixed host paths, crash recovery) is hack/nodehost.py's.

The binaries come from `hack/build-node` (Go modules, cached by version); the sandbox image
(hack/nodeimage.py) holds /pause and /netcheck and is imported, as no registry answers here.
The apiserver reaches the kubelet (logs, exec) at the gateway address with its client cert.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import containerimages
import nodehost
import nodeimage
import nodeservices
from localcluster import (
    REPO_ROOT,
    ControlPlane,
    Process,
    free_port,
    is_ours,
    is_running,
    process_identity,
    spawn_logged,
)
from nodeapi import KubeApi, api_record, http_ok, is_ready

BUILD_SCRIPT = REPO_ROOT / "hack" / "build-node"
CNI_BIN_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins
RUNC = shutil.which("runc") or "/usr/sbin/runc"


def node_bin_dir() -> Path:
    """Where the node's binaries are: $ARQFLEET_NODE_BIN, or built/cached by hack/build-node."""
    override = os.environ.get("ARQFLEET_NODE_BIN")
    if override:
        return Path(override)
    result = subprocess.run(
        [str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True, timeout=3600
    )
    return Path(result.stdout.strip().splitlines()[-1])


@dataclass
class Node:
    """One real node of `plane`. `start()` returns once the node is Ready and untainted."""

    plane: ControlPlane
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="arqfleet-node-")))
    # hack/cluster: the node outlives the process that starts it (no owner to outlive).
    detached: bool = False
    # kube-proxy and a route to the API server for pods (hack/nodeservices.py): one such run
    # per machine, as its iptables chains are the machine's.
    services: bool = False
    bin_dir: Path | None = None
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    processes: list[Process] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"arqfleet-node-{self.run_id}"

    @property
    def image(self) -> str:
        """The sandbox image, also for test pods: /pause (entrypoint) and /netcheck."""
        assert self.bin_dir is not None
        return nodeimage.reference(self.bin_dir)

    @property
    def gateway(self) -> str:
        """The bridge's address on the host: the node's InternalIP, reachable from pods."""
        return str(self.record["gateway"])

    @property
    def subnet(self) -> str:
        return str(self.record["subnet"])

    @property
    def containerd_socket(self) -> Path:
        return self.workdir / "containerd" / "containerd.sock"

    def start(self, timeout: float = 60) -> Node:
        if self.bin_dir is None:
            self.bin_dir = node_bin_dir()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.record = {
            "id": self.run_id,
            "node": self.name,
            "workdir": str(self.workdir),
            "owner": None
            if self.detached
            else {"pid": os.getpid(), "identity": process_identity(os.getpid())},
            "cgroup": f"/arqfleet-node-{self.run_id}",
            "bridge": f"arqn{self.run_id}",
            "network": f"arqfleet-{self.run_id}",
            "containerd_socket": str(self.containerd_socket),
            "bin_dir": str(self.bin_dir),
            "api": api_record(self.plane),
            "services": self.services,
            "pids": {},
            "identities": {},
        }
        try:
            nodehost.register(self.record)
            self._create_cgroup_root()
            deadline = time.monotonic() + timeout
            self._start_containerd(deadline)
            self._import_image()
            self._start_kubelet()
            self._start_scheduler()
            if self.services:
                self._start_services()
            self._wait_ready(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop everything and put the machine back as it was (see `teardown`)."""
        if self.record:
            teardown(self.record)
        outlived = False
        for process in self.processes:  # our children: whatever the record says, none outlives us
            if process.popen.poll() is None:
                print(f"localnode: {process.name} outlived the teardown; killing it", flush=True)
                process.popen.kill()
                outlived = True
            process.popen.wait(timeout=10)
        self.processes.clear()
        if outlived:  # it may have written into the directory the teardown had removed
            nodehost.release(self.record)

    def state(self) -> dict[str, Any]:
        """What `hack/cluster` saves to tear the node down from another process."""
        return dict(self.record)

    def log(self, name: str, lines: int = 40) -> str:
        for process in self.processes:
            if process.name == name:
                return process.tail(lines)
        return "(no such process)"

    # -- parts -----------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> Process:
        process = spawn_logged(self.workdir, name, argv)
        self.processes.append(process)
        self._remember(name, process.popen.pid)
        return process

    def _remember(self, name: str, pid: int) -> None:
        self.record["pids"][name] = pid
        self.record["identities"][name] = _identity_after_exec(pid)
        nodehost.update(self.record)

    def _create_cgroup_root(self) -> None:
        """The kubelet's cgroupRoot must exist in every hierarchy; a new cpuset cgroup starts
        with no CPUs and no memory nodes, so it gets its parent's."""
        name = self.record["cgroup"].strip("/")
        for mount in nodehost.cgroup_mounts():
            (mount / name).mkdir(exist_ok=True)
            for knob in ("cpuset.cpus", "cpuset.mems"):
                if (mount / knob).exists():
                    (mount / name / knob).write_text((mount / knob).read_text())

    def _start_containerd(self, deadline: float) -> None:
        assert self.bin_dir is not None
        config = self.workdir / "containerd" / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(_containerd_config(self.workdir, self.record, self.image))
        cni = self.workdir / "cni" / "net.d"
        cni.mkdir(parents=True, exist_ok=True)
        (cni / "10-arqfleet.conflist").write_text(
            json.dumps(_cni_config(self.workdir, self.record))
        )
        # containerd starts the shim from its own directory, found on PATH.
        env = {**os.environ, "PATH": f"{self.bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
        log = self.workdir / "containerd.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [str(self.bin_dir / "subreaper"), str(self.bin_dir / "containerd"),
                 "--config", str(config)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=env,
            )  # fmt: skip
        self.processes.append(Process("containerd", popen, log))
        self._remember("subreaper", popen.pid)
        self._wait("containerd's socket", deadline, self._containerd_up)

    def _containerd_up(self) -> bool:
        if "containerd" not in self.record["pids"]:
            child = _child_of(int(self.record["pids"]["subreaper"]), "containerd")
            if child is None:
                return False
            self._remember("containerd", child)
        if not self.containerd_socket.exists():
            return False
        return self._ctr("version", check=False).returncode == 0

    def _ctr(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return ctr(self.record, *args, check=check, timeout=timeout)

    def container_pids(self, command: bytes, pod_uid: str | None = None) -> list[int]:
        """Host PIDs of the node's container processes running `command` (an argv element
        ending in it), of the pod `pod_uid` only if given (found by its cgroup: the kubelet
        names a pod's cgroup pod<uid>, with underscores under the systemd driver)."""
        wanted = (f"pod{pod_uid}", f"pod{pod_uid.replace('-', '_')}") if pod_uid else ()
        found = []
        for pid in nodehost.cgroup_pids(self.record):
            try:
                cgroups = Path(f"/proc/{pid}/cgroup").read_text()
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue  # ended meanwhile
            if wanted and not any(name in cgroups for name in wanted):
                continue
            if any(part.endswith(command) for part in argv):
                found.append(pid)
        return found

    def load_image(self, reference: str) -> None:
        """Import an image from podman's store into this node (see `load_image`)."""
        load_image(self.record, reference)

    def _import_image(self) -> None:
        assert self.bin_dir is not None
        self._ctr("images", "import", str(self.bin_dir / nodeimage.ARCHIVE))

    def _start_kubelet(self) -> None:
        assert self.bin_dir is not None
        config = self.workdir / "kubelet.yaml"
        config.write_text(json.dumps(_kubelet_config(self.workdir, self.record, self.plane)))
        self._spawn(
            "kubelet",
            [
                str(self.bin_dir / "kubelet"),
                f"--config={config}",
                f"--kubeconfig={self.plane.kubeconfig}",
                f"--root-dir={self.workdir / 'kubelet'}",
                f"--cert-dir={self.workdir / 'kubelet-pki'}",
                f"--hostname-override={self.name}",
                f"--node-ip={self.gateway}",
                "-v=1",
            ],
        )

    def _start_scheduler(self) -> None:
        assert self.bin_dir is not None
        port = free_port()
        self.record["scheduler_port"] = port
        kubeconfig = str(self.plane.kubeconfig)
        self._spawn(
            "kube-scheduler",
            [
                str(self.bin_dir / "kube-scheduler"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'scheduler-certs'}",
                "-v=1",
            ],
        )

    def _start_services(self) -> None:
        """The API server on the bridge address (through the relay), published as the
        `kubernetes` Service's endpoint, and kube-proxy to route the ClusterIP there."""
        assert self.bin_dir is not None
        gateway = self.gateway
        self.record["relay_port"] = free_port(gateway)
        self.record["kube_proxy_healthz_port"] = free_port()
        self.record["kube_proxy_metrics_port"] = free_port()
        # From here on the teardown undoes kube-proxy's chains and the EndpointSlice (not
        # before: a run refused at registration must not clean up the one that holds them).
        self.record["kube_firewall_before"] = nodeservices.existing_kubelet_chains()
        nodehost.update(self.record)
        self._spawn(
            "apirelay",
            [str(self.bin_dir / "apirelay"), f"{gateway}:{self.record['relay_port']}",
             f"127.0.0.1:{self.plane.apiserver_port}"],
        )  # fmt: skip
        nodeservices.publish_apiserver(self.record["api"], gateway, self.record["relay_port"])
        config = self.workdir / "kube-proxy.yaml"
        config.write_text(
            json.dumps(nodeservices.kube_proxy_config(self.record, self.plane.kubeconfig))
        )
        self._spawn("kube-proxy", [str(self.bin_dir / "kube-proxy"), f"--config={config}", "-v=1"])

    def _wait_ready(self, deadline: float) -> None:
        api = KubeApi(self.record["api"])
        self._wait("the Node to be Ready", deadline, lambda: is_ready(api.node(self.name)))
        self._wait("the not-ready taint to go", deadline, lambda: api.untaint(self.name))
        healthz = f"https://127.0.0.1:{self.record['scheduler_port']}/healthz"
        self._wait("kube-scheduler's /healthz", deadline, lambda: http_ok(healthz))
        if self.services:
            self._wait(
                "kube-proxy to route the kubernetes Service",
                deadline,
                lambda: nodeservices.programmed(self.record),
            )

    def _wait(self, what: str, deadline: float, ready: Any) -> None:
        while not ready():
            for process in self.processes:
                if process.popen.poll() is not None:
                    raise RuntimeError(
                        f"{process.name} exited with {process.popen.returncode}:\n{process.tail()}"
                    )
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(0.1)


def _identity_after_exec(pid: int, timeout: float = 5) -> str | None:
    """`process_identity` once the new program's command line is readable. Popen returns when
    exec closed the error pipe, which the kernel does before it sets up the new argv: read at
    once, the identity may have an empty command line and never match the process again."""
    deadline = time.monotonic() + timeout
    while True:
        identity = process_identity(pid)
        if identity is None or identity.split(" ", 2)[2] or time.monotonic() > deadline:
            return identity
        time.sleep(0.005)


def _child_of(parent: int, command: str) -> int | None:
    """The child of `parent` that has exec'd `command` (a fork shows its parent's command
    line until it execs)."""
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (proc / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) != parent:
                continue
            argv0 = (proc / "cmdline").read_bytes().split(b"\0")[0].decode()
            if Path(argv0).name == command:
                return int(proc.name)
    return None


def load_image(record: dict[str, Any], reference: str) -> None:
    """Import an image from podman's store into a node's containerd (`k8s.io`, where the
    kubelet looks), under the same name: pods run it with imagePullPolicy Never or
    IfNotPresent, as no registry answers here. The build is podman's and cached by content
    (hack/build-images); each node's containerd is its own, so each run imports. `record` is
    the node's (`Node.state()`), so a node another process started takes images too."""
    with tempfile.TemporaryDirectory(prefix="arqfleet-image-") as scratch:
        archive = Path(scratch) / "image.tar"
        # docker-archive keeps the name in the archive (RepoTags), which `ctr images import`
        # reads; podman's oci-archive would name the image by its tag alone.
        subprocess.run(
            ["podman", "save", "--quiet", "--format", "docker-archive",
             "--output", str(archive), reference],
            env=containerimages.podman_env(), capture_output=True, text=True,
            timeout=300, check=True,
        )  # fmt: skip
        ctr(record, "images", "import", str(archive), timeout=300)


def ctr(
    record: dict[str, Any], *args: str, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """containerd's own client on a node's socket, in the kubelet's namespace (`k8s.io`)."""
    return subprocess.run(
        [str(Path(record["bin_dir"]) / "ctr"), "--address", record["containerd_socket"],
         "--namespace", "k8s.io", *args],
        capture_output=True, text=True, timeout=timeout, check=check,
    )  # fmt: skip


def teardown(record: dict[str, Any]) -> None:
    """Stop one node run from its record (this process's or one saved by hack/cluster):
    kubelet and kube-scheduler, every pod sandbox through CRI, containerd; then nodehost reaps
    whatever is left, deletes the Node and, for the last run, restores the machine."""
    for name in ("kubelet", "kube-scheduler", "kube-proxy", "apirelay"):
        _stop_recorded(record, name, timeout=5)
    if _recorded_alive(record, "containerd"):
        cri_teardown = str(Path(record["bin_dir"]) / "cri-teardown")
        endpoint = f"unix://{record['containerd_socket']}"
        subprocess.run(
            [cri_teardown, "-endpoint", endpoint, "-timeout", "30s"],
            capture_output=True, timeout=40, check=False,
        )  # fmt: skip
    _stop_recorded(record, "containerd", timeout=5)
    nodehost.release(record)


def _recorded_alive(record: dict[str, Any], name: str) -> bool:
    pid = record["pids"].get(name)
    if pid is None:
        return False
    if is_ours(int(pid), record["identities"].get(name)):
        return True
    if is_running(int(pid)):
        print(
            f"localnode: {name} {pid} is not the process recorded: "
            f"{process_identity(int(pid))!r} != {record['identities'].get(name)!r}",
            flush=True,
        )
    return False


def _stop_recorded(record: dict[str, Any], name: str, timeout: float) -> None:
    if not _recorded_alive(record, name):
        return
    pid = int(record["pids"][name])
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while is_running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if is_running(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# -- configuration -----------------------------------------------------------------------


def _containerd_config(workdir: Path, record: dict[str, Any], sandbox_image: str) -> str:
    base = workdir / "containerd"
    return f"""version = 3
root = "{base / "root"}"
state = "{base / "state"}"
# Plugins that would write outside the run's directory, or that nothing here uses.
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.internal.v1.opt",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{record["containerd_socket"]}"

[ttrpc]
  address = "{record["containerd_socket"]}.ttrpc"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{sandbox_image}"

[plugins.'io.containerd.cri.v1.runtime']
  # Root here cannot lower oom_score_adj: every sandbox would fail to start without this.
  restrict_oom_score_adj = true
  # Network namespaces under the state directory, not /var/run/netns.
  netns_mounts_under_state_dir = true
  enable_cdi = false
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "{RUNC}"
        Root = "{workdir / "runc"}"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{CNI_BIN_DIR}"]
    conf_dir = "{workdir / "cni" / "net.d"}"
    max_conf_num = 1
"""


def _cni_config(workdir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Pods on the run's bridge with an address from its /24 and no route beyond it (but
    the Service range's, through the host, on a node with services)."""
    routes = nodeservices.cni_routes(record) if record.get("services") else []
    return {
        "cniVersion": "1.0.0",
        "name": record["network"],
        "plugins": [
            {
                "type": "bridge",
                "bridge": record["bridge"],
                "isGateway": False,
                "ipMasq": False,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": record["subnet"], "gateway": record["gateway"]}]],
                    "dataDir": str(workdir / "cni" / "ipam"),
                    "routes": routes,
                },
            }
        ],
    }


def _kubelet_config(workdir: Path, record: dict[str, Any], plane: ControlPlane) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # The API server reaches it at the node's InternalIP (the gateway), with its client cert.
        "address": record["gateway"],
        "port": free_port(),
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": free_port(),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(plane.certs / "ca.crt")},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "containerRuntimeEndpoint": f"unix://{record['containerd_socket']}",
        # These machines: cgroups v1 (hybrid), no systemd, root that cannot lower oom_score_adj.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": record["cgroup"],
        "oomScoreAdj": 0,
        "failSwapOn": False,
        "makeIPTablesUtilChains": False,
        "podLogsDir": str(workdir / "pod-logs"),
        "volumePluginDir": str(workdir / "volume-plugins"),
        "resolvConf": "/etc/resolv.conf",
        # A small test disk: no evictions, no image GC (the sandbox image is imported, once).
        "evictionHard": {
            "memory.available": "1Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
    }
