"""One pod on the node: its container processes, probes, status and deletion (kubelet's job)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException

from .kube import HOST_IP, PORTS_ANNOTATION, REPO_ROOT, Obj, free_port, log, now_iso

if TYPE_CHECKING:
    from .agent import NodeAgent

TICK = 0.2  # seconds between a pod's local checks (process exits, restarts due)
MAX_BACKOFF = 300.0  # kubelet's cap on the crash-loop back-off
BACKOFF_RESET_SECONDS = 600.0  # kubelet forgets the back-off after 10 min of running
LOG_TAIL_LINES, LOG_TAIL_BYTES = 80, 2048  # kubelet's FallbackToLogsOnError limits


def log_tail(path: Path | None) -> str:
    if path is None or not path.exists():
        return ""
    data = path.read_bytes()[-LOG_TAIL_BYTES:].decode(errors="replace")
    return "\n".join(data.splitlines()[-LOG_TAIL_LINES:]).strip()


def termination_message(spec: Obj, code: int, log_path: Path | None) -> str:
    """lastState.terminated.message as kubelet sets it (kuberuntime_container.go).

    Kubelet reads the container's terminationMessagePath file (default /dev/termination-log)
    first. The agent runs no container filesystem, so that file never exists here: with the
    default policy "File" there is no message; with "FallbackToLogsOnError" the log tail stands
    in, and only for a non-zero exit code.
    """
    policy = spec.get("terminationMessagePolicy", "File")
    if policy == "FallbackToLogsOnError" and code != 0:
        return log_tail(log_path)
    return ""


class ConfigError(Exception):
    """The container cannot start yet (missing Secret/key): CreateContainerConfigError."""


@dataclass
class Container:
    spec: Obj
    starts: int = 0
    process: asyncio.subprocess.Process | None = None
    started_at: str | None = None
    started_mono: float = 0.0
    state: Obj = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Obj = field(default_factory=dict)
    ready: bool = False
    done: bool = False  # terminated for good (restartPolicy, or the pod is going away)
    next_start: float = 0.0
    backoff_steps: int = 0  # crashes since the last long run: the back-off's exponent
    container_id: str = ""
    log_path: Path | None = None
    probes: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def restart_count(self) -> int:
        return max(0, self.starts - 1)


class PodWorker:
    """Everything the agent does for one pod, in one task (like kubelet's pod workers)."""

    def __init__(self, agent: NodeAgent, pod: Obj) -> None:
        self.agent, self.pod = agent, pod
        self.changed = asyncio.Event()
        self.gone = False  # the pod no longer exists in the API
        self.containers = [Container(spec) for spec in pod["spec"]["containers"]]
        self.host_ports: dict[str, int] = {}
        self.start_time = now_iso()
        self.transitions: dict[str, tuple[bool, str]] = {}
        self.reported: Obj | None = None
        meta = pod["metadata"]
        self.key = f"{meta['namespace']}/{meta['name']}"
        self.path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        self.logs = agent.logs_dir / f"{meta['namespace']}_{meta['name']}_{meta['uid']}"

    def update(self, pod: Obj) -> None:
        self.pod = pod
        self.changed.set()

    def vanish(self) -> None:
        self.gone = True
        self.changed.set()

    @property
    def deleting(self) -> bool:
        return self.gone or bool(self.pod["metadata"].get("deletionTimestamp"))

    async def run(self) -> None:
        try:
            if not self.deleting:
                await self.assign_ports()
            while not self.deleting:
                try:
                    for container in self.containers:
                        await self.step(container)
                    await self.report()
                except (ApiException, aiohttp.ClientError, OSError) as error:
                    # A failed API call or spawn is retried on the next tick, as kubelet would.
                    log.warning("%s: %s", self.key, error)
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), TICK)
            await self.terminate()
        finally:
            # Agent shutdown (cancellation) or a bug: never leave a process behind.
            await asyncio.gather(
                *(self.stop(c, self.agent.shutdown_grace) for c in self.containers)
            )

    async def assign_ports(self) -> None:
        for spec in self.pod["spec"]["containers"]:
            for port in spec.get("ports") or ():
                host = free_port()
                self.host_ports[str(port["containerPort"])] = host
                if port.get("name"):
                    self.host_ports[port["name"]] = host
        if self.host_ports:
            named = {k: v for k, v in self.host_ports.items() if not k.isdigit()}
            patch = {
                "metadata": {
                    "annotations": {PORTS_ANNOTATION: json.dumps(named or self.host_ports)}
                }
            }
            with contextlib.suppress(ApiException, aiohttp.ClientError):  # informational only
                await self.agent.kube.maybe("PATCH", self.path, body=patch)

    # -- containers ---------------------------------------------------------------------------

    async def step(self, container: Container) -> None:
        process = container.process
        if process is not None and process.returncode is not None:
            self.exited(container, process.returncode)
        due = time.monotonic() >= container.next_start
        if container.process is None and not container.done and due:
            await self.start(container)

    def exited(self, container: Container, code: int, *, final: bool = False) -> None:
        for task in container.probes:
            task.cancel()
        container.probes.clear()
        code = 128 - code if code < 0 else code  # killed by signal N: 128+N, like a runtime
        terminated: Obj = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": container.started_at,
            "finishedAt": now_iso(),
            "containerID": container.container_id,
        }
        if message := termination_message(container.spec, code, container.log_path):
            terminated["message"] = message
        container.process, container.ready = None, False
        log.info("%s: container %s exited with %d", self.key, container.name, code)
        policy = self.pod["spec"].get("restartPolicy", "Always")
        if final or policy == "Never" or (policy == "OnFailure" and code == 0):
            container.state, container.done = {"terminated": terminated}, True
            return
        if time.monotonic() - container.started_mono >= BACKOFF_RESET_SECONDS:
            container.backoff_steps = 0  # it ran well for a while: a fresh crash starts low
        delay = min(self.agent.backoff * 2**container.backoff_steps, MAX_BACKOFF)
        container.backoff_steps += 1
        container.last_state = {"terminated": terminated}
        container.state = {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {delay:g}s restarting failed container="
                f"{container.name} pod={self.pod['metadata']['name']}",
            }
        }
        container.next_start = time.monotonic() + delay

    async def start(self, container: Container) -> None:
        try:
            env = await self.environment(container.spec)
        except (ConfigError, ApiException, aiohttp.ClientError) as error:
            container.state = {
                "waiting": {"reason": "CreateContainerConfigError", "message": str(error)}
            }
            container.next_start = time.monotonic() + 1  # kubelet retries too
            return
        argv = [
            expand(a, env)
            for a in [*container.spec.get("command", []), *container.spec.get("args", [])]
        ]
        executable = shutil.which(argv[0], path=env["PATH"]) if argv else None
        if executable is None:
            message = f"no executable for {argv[:1]} on PATH (the node agent has no images)"
            container.state = {"waiting": {"reason": "RunContainerError", "message": message}}
            container.next_start = time.monotonic() + 5
            return
        self.logs.mkdir(parents=True, exist_ok=True)
        container.log_path = self.logs / f"{container.name}-{container.starts}.log"
        with container.log_path.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                executable,
                *argv[1:],
                cwd=REPO_ROOT,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # own group: signalled directly, killed as a group
            )
        container.process, container.starts = process, container.starts + 1
        container.started_at, container.started_mono = now_iso(), time.monotonic()
        container.container_id = f"nodeagent://{process.pid}"
        container.state = {"running": {"startedAt": container.started_at}}
        log.info("%s: started %s pid %d: %s", self.key, container.name, process.pid, " ".join(argv))
        for kind in ("readinessProbe", "livenessProbe"):
            if probe := container.spec.get(kind):
                container.probes.append(
                    asyncio.create_task(self.probe(container, process, kind, probe))
                )
        if not container.spec.get("readinessProbe"):
            container.ready = True

    async def stop(self, container: Container, grace: float) -> None:
        """SIGTERM to the process itself, `grace` seconds, then SIGKILL to its whole group."""
        process = container.process
        if process is None:
            return
        if process.returncode is None:
            log.info(
                "%s: SIGTERM to %s (pid %d), grace %gs",
                self.key,
                container.name,
                process.pid,
                grace,
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                log.warning("%s: SIGKILL to %s after %gs", self.key, container.name, grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # and anything it left in its group
        await process.wait()

    # -- probes -------------------------------------------------------------------------------

    async def probe(
        self, container: Container, process: asyncio.subprocess.Process, kind: str, probe: Obj
    ) -> None:
        await asyncio.sleep(probe.get("initialDelaySeconds", 0))
        successes = failures = 0
        while process.returncode is None:
            ok = await self.check(probe)
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            if kind == "readinessProbe":
                ready = container.ready
                if ok and successes >= probe.get("successThreshold", 1):
                    ready = True
                elif failures >= probe.get("failureThreshold", 3):
                    ready = False
                if ready != container.ready:
                    container.ready = ready
                    self.changed.set()
            elif failures >= probe.get("failureThreshold", 3):
                log.warning(
                    "%s: liveness probe failed %d times: restarting %s",
                    self.key,
                    failures,
                    container.name,
                )
                grace = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
                await asyncio.shield(self.stop(container, grace))
                return
            await asyncio.sleep(probe.get("periodSeconds", 10))

    async def check(self, probe: Obj) -> bool:
        timeout = probe.get("timeoutSeconds", 1)
        if action := probe.get("httpGet"):
            port = self.host_ports.get(str(action["port"]), action["port"])
            url = f"http://{action.get('host', HOST_IP)}:{port}{action.get('path', '/')}"
            try:
                async with self.agent.http.get(
                    url, timeout=aiohttp.ClientTimeout(total=timeout)
                ) as response:
                    return 200 <= response.status < 400
            except (aiohttp.ClientError, TimeoutError, OSError):
                return False
        if action := probe.get("tcpSocket"):
            port = self.host_ports.get(str(action["port"]), action["port"])
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(HOST_IP, int(port)), timeout
                )
            except (TimeoutError, OSError):
                return False
            writer.close()
            return True
        return True  # exec and grpc probes are not supported: count as passing

    # -- environment --------------------------------------------------------------------------

    async def environment(self, spec: Obj) -> dict[str, str]:
        env = {
            "PATH": os.pathsep.join(
                [str(self.agent.bin_dir), os.environ.get("PATH", "/usr/bin:/bin")]
            ),
            "PYTHONPATH": str(REPO_ROOT),
            "HOME": os.environ.get("HOME", "/tmp"),
            "LANG": "C.UTF-8",
            "HOSTNAME": self.pod["metadata"]["name"],
            "PYTHONUNBUFFERED": "1",  # so the log tail in lastState.terminated.message is complete
        }
        for source in spec.get("envFrom") or ():
            kind, ref = (
                ("secrets", source["secretRef"])
                if "secretRef" in source
                else ("configmaps", source["configMapRef"])
            )
            obj = await self.read(kind, ref["name"], optional=ref.get("optional", False))
            for key, value in ((obj or {}).get("data") or {}).items():
                env[source.get("prefix", "") + key] = decode(kind, value)
        for var in spec.get("env") or ():
            if "valueFrom" in var:
                value = await self.value_from(var["valueFrom"])
                if value is not None:
                    env[var["name"]] = value
            else:
                env[var["name"]] = expand(var.get("value", ""), env)
        ports = {str(p["containerPort"]) for p in spec.get("ports") or ()}
        for name in self.agent.port_envs:
            if env.get(name) in ports:  # the one-host port remap (module docstring)
                env[name] = str(self.host_ports[env[name]])
        return env

    async def read(self, kind: str, name: str, *, optional: bool) -> Obj | None:
        namespace = self.pod["metadata"]["namespace"]
        obj = await self.agent.kube.maybe("GET", f"/api/v1/namespaces/{namespace}/{kind}/{name}")
        if obj is None and not optional:
            raise ConfigError(f'{kind[:-1]} "{name}" not found')
        return obj

    async def value_from(self, source: Obj) -> str | None:
        for kind, key in (("secrets", "secretKeyRef"), ("configmaps", "configMapKeyRef")):
            if ref := source.get(key):
                optional = ref.get("optional", False)
                data = ((await self.read(kind, ref["name"], optional=optional)) or {}).get(
                    "data"
                ) or {}
                if ref["key"] in data:
                    return decode(kind, data[ref["key"]])
                if optional:
                    return None
                raise ConfigError(f"couldn't find key {ref['key']} in {kind[:-1]} {ref['name']}")
        if ref := source.get("fieldRef"):
            return field_value(self.pod, ref["fieldPath"])
        return None  # resourceFieldRef: no resources here

    # -- status -------------------------------------------------------------------------------

    def status(self) -> Obj:
        statuses = []
        for c in self.containers:
            status: Obj = {
                "name": c.name,
                "image": c.spec.get("image", ""),
                "imageID": "",
                "ready": c.ready and c.process is not None,
                "started": c.process is not None,
                "restartCount": c.restart_count,
                "state": c.state,
                "lastState": c.last_state,
            }
            if c.process is not None:
                status["containerID"] = c.container_id
            statuses.append(status)
        ready = all(s["ready"] for s in statuses) and not self.deleting
        unready = [s["name"] for s in statuses if not s["ready"]]
        conditions = [
            self.condition("PodReadyToStartContainers", True),
            self.condition("Initialized", True),
            self.condition("Ready", ready, unready),
            self.condition("ContainersReady", ready, unready),
            self.condition("PodScheduled", True),
        ]
        if all(c.done for c in self.containers):
            failed = any(c.state["terminated"]["exitCode"] for c in self.containers)
            phase = "Failed" if failed else "Succeeded"
        else:
            phase = "Running" if any(c.starts for c in self.containers) else "Pending"
        return {
            "phase": phase,
            "hostIP": HOST_IP,
            "hostIPs": [{"ip": HOST_IP}],
            "podIP": HOST_IP,
            "podIPs": [{"ip": HOST_IP}],
            "startTime": self.start_time,
            "conditions": conditions,
            "containerStatuses": statuses,
        }

    def condition(self, kind: str, value: bool, unready: list[str] | None = None) -> Obj:
        previous = self.transitions.get(kind)
        if previous is None or previous[0] != value:
            self.transitions[kind] = previous = (value, now_iso())
        condition: Obj = {"type": kind, "status": str(value), "lastTransitionTime": previous[1]}
        if not value and unready:
            condition["reason"] = "ContainersNotReady"
            condition["message"] = f"containers with unready status: [{' '.join(unready)}]"
        return condition

    async def report(self) -> None:
        status = self.status()
        if status != self.reported:
            await self.agent.kube.maybe("PATCH", self.path + "/status", body={"status": status})
            self.reported = status

    # -- deletion -----------------------------------------------------------------------------

    async def terminate(self) -> None:
        meta, spec = self.pod["metadata"], self.pod["spec"]
        grace = float(
            meta.get("deletionGracePeriodSeconds", spec.get("terminationGracePeriodSeconds", 30))
        )
        if self.gone:  # force-deleted: nothing waits for us, but the workload deserves a SIGTERM
            grace = min(grace, self.agent.shutdown_grace)
        for container in self.containers:
            container.ready = False
        if not self.gone:
            await self.report()  # NotReady while draining
        await asyncio.gather(*(self.stop(c, grace) for c in self.containers))
        for container in self.containers:
            if container.process is not None and container.process.returncode is not None:
                self.exited(container, container.process.returncode, final=True)
        if not self.gone:
            await self.report()
            options = {
                "apiVersion": "v1",
                "kind": "DeleteOptions",
                "gracePeriodSeconds": 0,
                "preconditions": {"uid": meta["uid"]},
            }
            for attempt in range(5):
                try:
                    await self.agent.kube.maybe("DELETE", self.path, body=options)
                    break
                except (ApiException, aiohttp.ClientError) as error:
                    log.warning("%s: delete failed (%s), try %d", self.key, error, attempt + 1)
                    await asyncio.sleep(1)
            log.info("%s: terminated and removed", self.key)


def decode(kind: str, value: str) -> str:
    return base64.b64decode(value).decode() if kind == "secrets" else value


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) references to variables defined earlier; $$ escapes."""
    return re.sub(
        r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)",
        lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)),
        value,
    )


def field_value(pod: Obj, path: str) -> str:
    if match := re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path):
        return str((pod["metadata"].get(match.group(1)) or {}).get(match.group(2), ""))
    if path in ("status.podIP", "status.hostIP"):
        return HOST_IP
    node: Any = pod
    for part in path.split("."):
        node = node.get(part, "") if isinstance(node, dict) else ""
    return str(node)
