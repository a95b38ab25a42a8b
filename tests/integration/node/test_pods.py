"""Pods in real containers on the local node: scheduled by kube-scheduler, run by the kubelet
through containerd and runc, networked by the bridge CNI plugin on the run's own bridge."""

from __future__ import annotations

import ipaddress
import json
import socketserver
import threading
from pathlib import Path

import pytest

import nodehost
import nodeservices
from localcluster import KUBERNETES_SERVICE_IP, ControlPlane
from localnode import Node
from tests.support.kube import kubectl
from tests.support.node_pods import create_pod, pod, termination_message, wait_phase
from tests.support.waiting import wait_for


def test_the_node_is_ready_and_schedulable(node_plane: ControlPlane, node: Node) -> None:
    found = json.loads(kubectl(node_plane, "get", "node", node.name, "-o", "json").stdout)
    assert found["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.")
    assert found["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://2.")
    assert not found["spec"].get("taints")
    addresses = {a["type"]: a["address"] for a in found["status"]["addresses"]}
    assert addresses["InternalIP"] == node.gateway


def test_a_pod_runs_in_a_real_container(node_plane: ControlPlane, node: Node) -> None:
    create_pod(node_plane, node, "sleeper")
    running = wait_phase(node_plane, "sleeper", "Running")
    assert running["spec"]["nodeName"] == node.name
    assert ipaddress.ip_address(running["status"]["podIP"]) in ipaddress.ip_network(node.subnet)
    assert running["status"]["hostIP"] == node.gateway
    # A real process, in the node's cgroup tree, running the image's /pause.
    pids = nodehost.cgroup_pids(node.record)
    commands = {Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] for pid in pids}
    assert b"/pause" in commands
    # Deleting the pod: the kubelet stops the container (SIGTERM) and confirms the deletion.
    kubectl(node_plane, "-n", "default", "delete", "pod", "sleeper", "--wait=false")

    def gone() -> bool:
        found = kubectl(node_plane, "-n", "default", "get", "pod", "sleeper", check=False)
        return found.returncode != 0 and "NotFound" in found.stderr

    wait_for(gone, timeout=30, interval=0.2, what="the kubelet to confirm the deletion")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    seen: list[tuple[str, str]]


class _Greeter(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        line = self.rfile.readline().decode().strip()
        self.server.seen.append((self.client_address[0], line))
        self.wfile.write(f"hello {line} from the host\n".encode())


def test_a_pod_reaches_a_server_on_the_bridge_gateway(node_plane: ControlPlane, node: Node) -> None:
    with _Server((node.gateway, 0), _Greeter) as server:
        server.seen = []
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            address = f"{node.gateway}:{server.server_address[1]}"
            create_pod(node_plane, node, "caller", ["/netcheck", address, "caller"])
            done = wait_phase(node_plane, "caller", "Succeeded")
        finally:
            server.shutdown()
    assert termination_message(done) == "hello caller from the host\n"
    assert server.seen == [(done["status"]["podIP"], "caller")]
    # The API server reaches the kubelet (at the gateway, with its client cert) for the logs.
    logs = kubectl(node_plane, "-n", "default", "logs", "caller")
    assert logs.stdout == "hello caller from the host\n"


def api_server_answer(plane: ControlPlane, node: Node, pod_name: str) -> str:
    """What a pod gets back for a line of plain HTTP sent to the `kubernetes` Service."""
    address = f"{KUBERNETES_SERVICE_IP}:443"
    create_pod(plane, node, pod_name, ["/netcheck", address, "GET / HTTP/1.0"])
    return termination_message(wait_phase(plane, pod_name, "Succeeded"))


def test_a_pod_reaches_the_api_server_at_the_kubernetes_service(
    node_plane: ControlPlane, node: Node
) -> None:
    """kube-proxy DNATs the `kubernetes` Service's ClusterIP to the relay on the bridge, which
    hands the connection to the API server (on 127.0.0.1 only). A line of plain HTTP gets Go's
    TLS server's own answer to a client that speaks HTTP to it: proof of who answered."""
    assert api_server_answer(node_plane, node, "api-caller") == "HTTP/1.0 400 Bad Request\r\n"


def test_a_second_node_with_services_is_refused_and_the_first_keeps_its_routes(
    node_plane: ControlPlane, node: Node
) -> None:
    """kube-proxy's chains are the machine's: a second run must not start another kube-proxy,
    and its failed start must not clean up the chains the first run still needs."""
    with pytest.raises(RuntimeError, match=f"node run {node.run_id} runs kube-proxy already"):
        Node(node_plane, services=True).start()
    assert nodeservices.programmed(node.record)
    answer = api_server_answer(node_plane, node, "api-after-refusal")
    assert answer == "HTTP/1.0 400 Bad Request\r\n"


def test_a_pod_has_no_route_off_the_machine(node_plane: ControlPlane, node: Node) -> None:
    # A documentation address (TEST-NET-3): the host would route it out of its default route;
    # a pod has no default route, so the connect fails at once and nothing leaves the bridge.
    create_pod(node_plane, node, "escaper", ["/netcheck", "203.0.113.1:80", "escaper"])
    failed = wait_phase(node_plane, "escaper", "Failed")
    assert "network is unreachable" in termination_message(failed)
    assert pod(node_plane, "escaper")["status"]["podIP"]
