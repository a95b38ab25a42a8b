"""The Service network of a node run (`Node(plane, services=True)`): pods reach ClusterIPs, the
`kubernetes` Service's first, as on a real cluster, so an in-cluster client (the chart's
operator) runs in a pod.

- kube-proxy (iptables mode; hack/build-node builds it from the control plane's pinned
  k8s.io/kubernetes) programs the host's KUBE-* chains: a ClusterIP is DNATed to an endpoint.
- The API server serves on 127.0.0.1 only (hack/localcluster.py), and its own endpoint
  reconciler is off, as loopback cannot be an endpoint. apirelay (hack/nodetools) listens on
  the run's bridge address and relays to it; the `kubernetes` EndpointSlice points there.
- Pods get one route more: the Service range via the bridge gateway (CNI host-local). Still no
  default route and no masquerade: kube-proxy marks for masquerade only traffic to a ClusterIP
  from outside the pod /24, and pods have nowhere to go but this host.

kube-proxy's chains are machine-wide (iptables has no per-run tables), so one run at a time
may have them: nodehost refuses a second. Its teardown (`cleanup`, also for a run that
crashed) runs `kube-proxy --cleanup` and withdraws the EndpointSlice. kube-proxy changes no
sysctl with this configuration: no localhost NodePorts (route_localnet), conntrack sizes and
timeouts left as the machine has them, oom_score_adj untouched.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from localcluster import SERVICE_CIDR
from nodeapi import KubeApi, delete

SLICE = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes"
FIELD_MANAGER = "arqfleet-localnode"


def kube_proxy_config(record: dict[str, Any], kubeconfig: Path) -> dict[str, Any]:
    zero = "0s"
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": record["node"],
        "bindAddress": record["gateway"],
        "healthzBindAddress": f"127.0.0.1:{record['kube_proxy_healthz_port']}",
        "metricsBindAddress": f"127.0.0.1:{record['kube_proxy_metrics_port']}",
        "mode": "iptables",
        "clusterCIDR": record["subnet"],
        "detectLocalMode": "ClusterCIDR",
        # NodePorts only on the bridge address: never on the machine's other interfaces, and
        # not on loopback (which would set route_localnet).
        "nodePortAddresses": [f"{record['gateway']}/32"],
        "iptables": {"localhostNodePorts": False, "masqueradeAll": False},
        # Zero: leave the machine's conntrack table size and timeouts alone.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": zero,
            "tcpCloseWaitTimeout": zero,
            "udpTimeout": zero,
            "udpStreamTimeout": zero,
        },
        # Root here cannot lower oom_score_adj (as for containerd and the kubelet).
        "oomScoreAdj": 0,
    }


def cni_routes(record: dict[str, Any]) -> list[dict[str, str]]:
    """The pods' route to ClusterIPs, through the host (where kube-proxy's DNAT happens)."""
    return [{"dst": SERVICE_CIDR, "gw": record["gateway"]}]


def publish_apiserver(api: dict[str, str], address: str, port: int) -> None:
    """The `kubernetes` Service's endpoint: the relay on the bridge address (server-side
    apply, so a second publication replaces the first)."""
    body = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {
                "kubernetes.io/service-name": "kubernetes",
                "endpointslice.kubernetes.io/managed-by": FIELD_MANAGER,
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }
    KubeApi(api).request(
        "PATCH",
        f"{SLICE}?fieldManager={FIELD_MANAGER}&force=true",
        body,
        "application/apply-patch+yaml",
    )


def programmed(record: dict[str, Any]) -> bool:
    """kube-proxy has DNAT for the `kubernetes` Service to the relay (what pods need)."""
    saved = subprocess.run(
        ["iptables-save", "-t", "nat"], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    relay = f"{record['gateway']}:{record['relay_port']}"
    return "default/kubernetes:https" in saved and f"--to-destination {relay}" in saved


# kube-proxy also creates the kubelet's KUBE-FIREWALL chain (a copy, with jumps from INPUT and
# OUTPUT), which its --cleanup leaves for the kubelet (pkg/proxy/iptables/proxier.go); our
# kubelet makes no iptables chains, so the teardown removes it unless it was there before.
IPTABLES = ("iptables", "ip6tables")
KUBELET_CHAIN = "KUBE-FIREWALL"


def _iptables(command: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [command, "-w", "5", "-t", "filter", *args],
        capture_output=True, text=True, timeout=15, check=False,
    )  # fmt: skip


def existing_kubelet_chains() -> list[str]:
    """The iptables commands whose filter table has KUBE-FIREWALL already (before kube-proxy)."""
    return [cmd for cmd in IPTABLES if _iptables(cmd, "-S", KUBELET_CHAIN).returncode == 0]


def _remove_kubelet_chain(command: str) -> None:
    for parent in ("INPUT", "OUTPUT"):
        while _iptables(command, "-D", parent, "-j", KUBELET_CHAIN).returncode == 0:
            pass
    _iptables(command, "-F", KUBELET_CHAIN)
    _iptables(command, "-X", KUBELET_CHAIN)


def cleanup(record: dict[str, Any]) -> None:
    """Undo a services run's machine-wide part; kube-proxy and the relay are already gone.
    Idempotent. Nothing for a run that never got as far as starting them: one refused at
    registration because another run holds the chains must leave that run's alone."""
    if "kube_firewall_before" not in record:
        return
    kube_proxy = Path(record["bin_dir"]) / "kube-proxy"
    subprocess.run([str(kube_proxy), "--cleanup"], capture_output=True, timeout=60, check=False)
    for command in IPTABLES:
        if command not in record["kube_firewall_before"]:
            _remove_kubelet_chain(command)
    delete(record["api"], SLICE)
