"""A real local Kubernetes control plane, started the way controller-runtime's envtest does.

etcd + kube-apiserver (+ optionally kube-controller-manager) as local processes on free
loopback ports, with self-signed certificates, client-certificate auth and a kubeconfig for
clients. Used by the test fixtures and by `hack/cluster up|down|env` for people.

The binaries come from `hack/build-control-plane` (built from Go modules, cached by version).
Nothing here listens on anything but 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO_ROOT / "hack" / "build-control-plane"

# The controllers the e2e tier needs: Deployments -> ReplicaSets -> Pods, garbage collection
# through ownerReferences, namespace deletion, service accounts, PodDisruptionBudgets. The
# node, route and cloud controllers are left out: there are no real nodes to manage.
CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "disruption-controller",
    "root-ca-certificate-publisher-controller",
)


# kube-apiserver 1.36 shuts down its controllers at once on SIGTERM, then sits a full minute in
# "stopping ServiceCIDR Allocator Controller" (measured); its data is disposable, so it gets a
# few seconds and then SIGKILL.
STOP_TIMEOUTS = {"kube-apiserver": 3.0}

# Test identities in this group are audited (and only they: the log stays small).
RESTRICTED_GROUP = "arqfleet:audited"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def control_plane_bin_dir() -> Path:
    """Where the binaries are: $ARQFLEET_CONTROL_PLANE_BIN, or built/cached by the script."""
    override = os.environ.get("ARQFLEET_CONTROL_PLANE_BIN")
    if override:
        return Path(override)
    result = subprocess.run([str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True)
    return Path(result.stdout.strip().splitlines()[-1])


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(
        ["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


# The Service network, and the ClusterIP the API server gives the `kubernetes` Service (the
# range's first address), which pods on a node with kube-proxy dial (hack/localnode.py).
SERVICE_CIDR = "10.0.0.0/24"
KUBERNETES_SERVICE_IP = "10.0.0.1"
SERVER_EXT = (
    f"subjectAltName=DNS:localhost,IP:127.0.0.1,IP:{KUBERNETES_SERVICE_IP},"
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n"
    "extendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n"
)
CLIENT_EXT = "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n"
CERT_DAYS = "30"


def sign_cert(directory: Path, name: str, subject: str, extensions: str, ca: Path) -> None:
    """A new key `name.key` and `name.crt` for `subject`, signed by the CA in `ca`."""
    directory.mkdir(parents=True, exist_ok=True)
    ext = directory / f"{name}.ext"
    ext.write_text(extensions)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
             "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=directory)  # fmt: skip
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", str(ca / "ca.crt"),
             "-CAkey", str(ca / "ca.key"), "-CAcreateserial", "-days", CERT_DAYS,
             "-out", f"{name}.crt", "-extfile", str(ext), cwd=directory)  # fmt: skip


def make_certs(directory: Path) -> None:
    """A throwaway CA, a serving cert for 127.0.0.1/localhost, an admin client cert, SA keys."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", CERT_DAYS,
             "-subj", "/CN=arqfleet-local-ca", "-keyout", "ca.key", "-out", "ca.crt",
             cwd=directory)  # fmt: skip
    sign_cert(directory, "apiserver", "/CN=kube-apiserver", SERVER_EXT, directory)
    sign_cert(directory, "admin", "/O=system:masters/CN=arqfleet-admin", CLIENT_EXT, directory)
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=directory)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=directory)


def stop_process(popen: subprocess.Popen[bytes], timeout: float = 15) -> int:
    """SIGTERM, then SIGKILL after `timeout` seconds; returns the exit code."""
    if popen.poll() is None:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=timeout)
    return int(popen.returncode)


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 15) -> None:
        stop_process(self.popen, timeout)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def spawn_logged(workdir: Path, name: str, argv: list[str]) -> Process:
    """Start `argv` with its output appended to WORKDIR/NAME.log."""
    log = workdir / f"{name}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Own process group: Ctrl-C in a terminal running `hack/cluster up` or pytest
            # must not kill the cluster before the fixture's orderly stop.
            start_new_session=True,
        )
    return Process(name, popen, log)


@dataclass
class ControlPlane:
    """One local control plane. `start()` blocks until the API server is ready."""

    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="arqfleet-kcp-")))
    with_controller_manager: bool = False
    bin_dir: Path | None = None
    apiserver_port: int = field(default_factory=free_port)
    etcd_port: int = field(default_factory=free_port)
    etcd_peer_port: int = field(default_factory=free_port)
    controller_manager_port: int = field(default_factory=free_port)
    processes: list[Process] = field(default_factory=list)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def certs(self) -> Path:
        return self.workdir / "pki"

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"

    def _audit_policy(self) -> Path:
        policy = self.workdir / "audit-policy.json"
        policy.write_text(
            json.dumps(
                {
                    "apiVersion": "audit.k8s.io/v1",
                    "kind": "Policy",
                    "omitStages": ["RequestReceived", "ResponseStarted"],
                    "rules": [
                        {"level": "Metadata", "userGroups": [RESTRICTED_GROUP]},
                        {"level": "None"},
                    ],
                }
            )
        )
        return policy

    def user_kubeconfig(self, user: str) -> Path:
        """A kubeconfig for `user`, who can do only what RBAC grants it (no system:masters).

        Its certificate carries the group RESTRICTED_GROUP, whose requests are audited."""
        directory = self.workdir / "users" / user
        sign_cert(directory, "user", f"/O={RESTRICTED_GROUP}/CN={user}", CLIENT_EXT, self.certs)
        path = directory / "kubeconfig"
        config = self._kubeconfig(directory / "user.crt", directory / "user.key", user)
        path.write_text(json.dumps(config))
        return path

    def audit_events(self, user: str) -> list[dict[str, object]]:
        """The audit log's completed requests by `user`."""
        events = []
        if self.audit_log.exists():
            for line in self.audit_log.read_text().splitlines():
                event = json.loads(line)
                if event.get("user", {}).get("username") == user:
                    events.append(event)
        return events

    def start(self, timeout: float = 120) -> None:
        if self.bin_dir is None:
            self.bin_dir = control_plane_bin_dir()
        make_certs(self.certs)
        self._start_etcd()
        self._start_apiserver()
        self._wait_http(f"{self.server}/readyz", timeout, "kube-apiserver", client_cert=True)
        self._write_kubeconfig()
        if self.with_controller_manager:
            self.start_controller_manager(timeout)

    def start_controller_manager(self, timeout: float = 60) -> None:
        assert self.bin_dir is not None
        self._spawn(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.controller_manager_port}",
                f"--cert-dir={self.workdir / 'kcm-certs'}",
                f"--controllers={','.join(CONTROLLERS)}",
                f"--service-account-private-key-file={self.certs / 'sa.key'}",
                f"--root-ca-file={self.certs / 'ca.crt'}",
                "--use-service-account-credentials=false",
                # Fast GC and ReplicaSet sync keep the e2e tier quick on 2 cores.
                "--concurrent-gc-syncs=5",
                "--concurrent-deployment-syncs=5",
                "--concurrent-replicaset-syncs=5",
                "-v=1",
            ],
        )
        self._wait_http(
            f"https://127.0.0.1:{self.controller_manager_port}/healthz",
            timeout,
            "kube-controller-manager",
            client_cert=False,
        )

    def restart_apiserver(self, timeout: float = 120) -> None:
        """Stop kube-apiserver (as an upgrade or a crash would) and start it again on the same
        port, certificates and etcd: clients see their watches and requests fail, then heal."""
        [apiserver] = [p for p in self.processes if p.name == "kube-apiserver"]
        apiserver.stop(timeout=STOP_TIMEOUTS.get("kube-apiserver", 15))
        self.processes.remove(apiserver)
        self._start_apiserver()
        self._wait_http(f"{self.server}/readyz", timeout, "kube-apiserver", client_cert=True)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop(timeout=STOP_TIMEOUTS.get(process.name, 15))
        self.processes.clear()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(self.kubeconfig)}

    def state(self) -> dict[str, object]:
        """What `hack/cluster` saves to find the processes again."""
        return {
            "workdir": str(self.workdir),
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "pids": {p.name: p.popen.pid for p in self.processes},
            "identities": {p.name: process_identity(p.popen.pid) for p in self.processes},
        }

    # -- internals ------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> Process:
        process = spawn_logged(self.workdir, name, argv)
        self.processes.append(process)
        return process

    def _start_etcd(self) -> None:
        assert self.bin_dir is not None
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        client = f"http://127.0.0.1:{self.etcd_port}"
        self._spawn(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                "--listen-metrics-urls=",
                # Test data is disposable; fsync is the slowest thing etcd does on a VM disk.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )

    def _start_apiserver(self) -> None:
        assert self.bin_dir is not None
        c = self.certs
        self._spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.apiserver_port}",
                # Loopback cannot be advertised in the `kubernetes` Endpoints, and a host without
                # a default route has nothing else: so advertise 127.0.0.1 and reconcile nothing.
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={c / 'apiserver.crt'}",
                f"--tls-private-key-file={c / 'apiserver.key'}",
                f"--client-ca-file={c / 'ca.crt'}",
                "--authorization-mode=RBAC",
                f"--service-account-issuer={self.server}",
                f"--service-account-key-file={c / 'sa.pub'}",
                f"--service-account-signing-key-file={c / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                *self._admission_plugins(),
                # Requests by restricted test identities (users "arqfleet-*") are audited, so
                # a test can compare what the operator did with the RBAC rules it ships.
                f"--audit-policy-file={self._audit_policy()}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",
                "--allow-privileged=true",
                # A real node (hack/localnode.py) serves logs and exec at its InternalIP and
                # accepts this client certificate.
                f"--kubelet-client-certificate={c / 'admin.crt'}",
                f"--kubelet-client-key={c / 'admin.key'}",
                "--kubelet-preferred-address-types=InternalIP",
                "--profiling=false",
                "-v=0",
            ],
        )

    def _admission_plugins(self) -> list[str]:
        # As on hardened clusters: blockOwnerDeletion needs update on <owner>/finalizers.
        enabled = "--enable-admission-plugins=OwnerReferencesPermissionEnforcement"
        if self.with_controller_manager:
            # As on every cluster: pods get their ServiceAccount's token (projected), so a pod
            # such as the chart's operator can call the API; the controller manager creates
            # each namespace's `default` ServiceAccount, which admission then requires.
            return [enabled]
        # As envtest: without a controller manager no `default` ServiceAccount ever appears,
        # and the plugin would refuse every pod that names none.
        return [enabled, "--disable-admission-plugins=ServiceAccount"]

    def _ssl_context(self, client_cert: bool) -> ssl.SSLContext:
        if not client_cert:
            # kube-controller-manager serves a self-signed cert of its own; /healthz is open.
            return ssl._create_unverified_context()
        context = ssl.create_default_context(cafile=str(self.certs / "ca.crt"))
        context.load_cert_chain(str(self.certs / "admin.crt"), str(self.certs / "admin.key"))
        return context

    def _wait_http(self, url: str, timeout: float, what: str, *, client_cert: bool) -> None:
        context = self._ssl_context(client_cert)
        deadline = time.monotonic() + timeout
        last_error = ""
        while time.monotonic() < deadline:
            for process in self.processes:
                if process.popen.poll() is not None:
                    raise RuntimeError(
                        f"{process.name} exited with {process.popen.returncode}:\n{process.tail()}"
                    )
            try:
                with urllib.request.urlopen(url, context=context, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError) as error:
                last_error = str(error)
            time.sleep(0.2)
        raise TimeoutError(f"{what} not healthy at {url} after {timeout}s: {last_error}")

    def _write_kubeconfig(self) -> None:
        c = self.certs
        config = self._kubeconfig(c / "admin.crt", c / "admin.key", "arqfleet-admin")
        # JSON is valid YAML, so every kubeconfig reader accepts it.
        self.kubeconfig.write_text(json.dumps(config, indent=2))

    def _kubeconfig(self, cert: Path, key: Path, user: str) -> dict[str, object]:
        c = self.certs
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "arqfleet-local",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority": str(c / "ca.crt"),
                    },
                }
            ],
            "users": [
                {"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}
            ],
            "contexts": [
                {"name": "arqfleet-local", "context": {"cluster": "arqfleet-local", "user": user}}
            ],
            "current-context": "arqfleet-local",
        }


def is_running(pid: int) -> bool:
    """Alive and not a zombie: where PID 1 does not reap orphans, a stopped process of an
    earlier `hack/cluster up` stays in the table as a zombie, which signal 0 still finds."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def process_identity(pid: int) -> str | None:
    """Who `pid` is, beyond its number: the boot, the process's start time and its command
    line. A pid saved in a state file is reused after a reboot or a long time, and signalling
    it then would hit an unrelated process; a saved identity that still matches is ours."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    started = stat.rsplit(")", 1)[1].split()[19]  # field 22: start time, clock ticks since boot
    return f"{boot} {started} {cmdline.strip()}"


def is_ours(pid: int, identity: str | None) -> bool:
    """Is `pid` still the process whose identity was saved? (False when none was saved.)"""
    return identity is not None and process_identity(pid) == identity


def stop_pids(
    pids: dict[str, int], timeout: float = 5, identities: dict[str, str] | None = None
) -> None:
    """Stop processes started by an earlier `hack/cluster up` (in reverse start order), only
    those that are still the processes it started (see `process_identity`)."""
    known = identities or {}
    pids = {name: pid for name, pid in pids.items() if is_ours(pid, known.get(name))}
    for pid in reversed(list(pids.values())):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for pid in pids.values():
        while time.monotonic() < deadline:
            if not is_running(pid):
                break
            time.sleep(0.1)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
