"""The node: registration and heartbeat, the scheduler's binding, one PodWorker per pod."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from .kube import HOST_IP, REPO_ROOT, Kube, Obj, log, now_iso
from .pods import PodWorker

HEARTBEAT_SECONDS = 10


class NodeAgent:
    def __init__(
        self,
        kube: Kube,
        node: str,
        namespaces: list[str],
        logs_dir: Path,
        *,
        backoff: float = 10.0,
        shutdown_grace: float = 5.0,
        port_envs: tuple[str, ...] = ("ARQFLEET_HTTP_PORT",),
    ) -> None:
        self.kube, self.node, self.namespaces = kube, node, namespaces
        self.logs_dir, self.backoff, self.shutdown_grace = logs_dir, backoff, shutdown_grace
        self.port_envs = port_envs
        self.bin_dir = Path(sys.prefix) / "bin"  # the venv's bin: arqfleet-worker lives there
        self.workers: dict[str, PodWorker] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.finished: set[str] = set()
        self.http = aiohttp.ClientSession()
        self.paths = [f"/api/v1/namespaces/{ns}/pods" for ns in namespaces] or ["/api/v1/pods"]

    def node_status(self, ready: bool) -> Obj:
        now = now_iso()
        capacity = {"cpu": str(os.cpu_count() or 1), "memory": "8Gi", "pods": "110"}
        reason = (
            ("KubeletReady", "node agent is posting ready status")
            if ready
            else ("KubeletNotReady", "node agent stopped")
        )
        return {
            "capacity": capacity,
            "allocatable": capacity,
            "addresses": [
                {"type": "InternalIP", "address": HOST_IP},
                {"type": "Hostname", "address": self.node},
            ],
            "conditions": [
                {
                    "type": "Ready",
                    "status": str(ready),
                    "reason": reason[0],
                    "message": reason[1],
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
            ],
            "nodeInfo": {
                "kubeletVersion": "nodeagent",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }

    async def register(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node,
                "labels": {
                    "kubernetes.io/hostname": self.node,
                    "kubernetes.io/os": "linux",
                    "arqfleet.io/node-agent": "true",
                },
            },
        }
        with contextlib.suppress(ApiException):  # 409: registered by an earlier run
            await self.kube.call("POST", "/api/v1/nodes", body=body)
        await self.kube.call(
            "PATCH", f"/api/v1/nodes/{self.node}/status", body={"status": self.node_status(True)}
        )
        log.info("node %s registered (namespaces: %s)", self.node, self.namespaces or "all")

    async def heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await self.kube.call(
                    "PATCH",
                    f"/api/v1/nodes/{self.node}/status",
                    body={"status": self.node_status(True)},
                )
            except (ApiException, aiohttp.ClientError) as error:
                log.warning("heartbeat: %s", error)

    async def schedule(self, path: str) -> None:
        """Play the scheduler: bind every pending pod in scope to this node."""
        async for kind, obj in self.kube.watch(path, "spec.nodeName="):
            pods = obj["items"] if kind == "RELIST" else [obj] if kind != "DELETED" else []
            for pod in pods:
                if not pod["spec"].get("nodeName") and not pod["metadata"].get("deletionTimestamp"):
                    await self.bind(pod["metadata"])

    async def bind(self, meta: Obj) -> None:
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node},
        }
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/binding"
        try:
            bound = await self.kube.maybe("POST", path, body=binding)  # None: gone or bound
        except (ApiException, aiohttp.ClientError) as error:
            log.warning(
                "binding %s/%s failed (next relist retries): %s",
                meta["namespace"],
                meta["name"],
                error,
            )
            return
        if bound is not None:
            log.info("bound %s/%s to %s", meta["namespace"], meta["name"], self.node)

    async def run_pods(self, path: str) -> None:
        async for kind, obj in self.kube.watch(path, f"spec.nodeName={self.node}"):
            if kind == "RELIST":
                seen = {p["metadata"]["uid"] for p in obj["items"]}
                for uid, worker in list(self.workers.items()):
                    if uid not in seen and (path == "/api/v1/pods" or worker.path.startswith(path)):
                        worker.vanish()
                for pod in obj["items"]:
                    self.sync(pod)
            elif kind == "DELETED":
                if deleted := self.workers.get(obj["metadata"]["uid"]):
                    deleted.vanish()
            else:
                self.sync(obj)

    def sync(self, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        if uid in self.finished:
            return
        if existing := self.workers.get(uid):
            existing.update(pod)
            return
        worker = self.workers[uid] = PodWorker(self, pod)
        task = self.tasks[uid] = asyncio.create_task(worker.run())
        task.add_done_callback(lambda t: self.forget(uid, t))

    def forget(self, uid: str, task: asyncio.Task[None]) -> None:
        self.workers.pop(uid, None)
        self.tasks.pop(uid, None)
        self.finished.add(uid)
        if not task.cancelled() and task.exception() is not None:
            log.error("pod worker %s failed", uid, exc_info=task.exception())

    async def run(self) -> None:
        await self.register()
        loops = [asyncio.create_task(self.heartbeat())]
        for path in self.paths:
            loops += [
                asyncio.create_task(self.schedule(path)),
                asyncio.create_task(self.run_pods(path)),
            ]
        try:
            await asyncio.gather(*loops)
        finally:
            for task in loops:
                task.cancel()
            await self.stop()

    async def stop(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL after shutdown_grace) and go NotReady."""
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(ApiException, aiohttp.ClientError, OSError):
            await self.kube.call(
                "PATCH",
                f"/api/v1/nodes/{self.node}/status",
                body={"status": self.node_status(False)},
            )
        await self.http.close()


async def main_async(args: argparse.Namespace) -> None:
    configuration = client.Configuration()
    await config.load_kube_config(config_file=args.kubeconfig, client_configuration=configuration)
    async with client.ApiClient(configuration) as api:
        agent = NodeAgent(
            Kube(api),
            args.node_name,
            args.namespace,
            Path(args.logs_dir),
            backoff=args.restart_backoff_seconds,
            shutdown_grace=args.shutdown_grace_seconds,
            port_envs=tuple(args.port_env),
        )
        main = asyncio.current_task()
        assert main is not None
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, main.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await agent.run()
    log.info("node agent stopped")


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="hack/nodeagent.py",
        description=sys.modules[__package__ or "nodeagent"].__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node-name", required=True)
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="manage only pods here (repeatable; default: all)",
    )
    parser.add_argument("--logs-dir", default=str(REPO_ROOT / ".kcp" / "pod-logs"))
    parser.add_argument(
        "--restart-backoff-seconds",
        type=float,
        default=10.0,
        help="first crash-loop back-off, doubled per restart up to 300 (kubelet: 10)",
    )
    parser.add_argument(
        "--shutdown-grace-seconds",
        type=float,
        default=5.0,
        help="on agent shutdown, SIGTERM to SIGKILL delay for the processes it runs",
    )
    parser.add_argument(
        "--port-env",
        action="append",
        default=["ARQFLEET_HTTP_PORT"],
        help="env var holding a containerPort to remap to the pod's loopback port (repeatable)",
    )
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s nodeagent %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    asyncio.run(main_async(args))
    return 0
