"""The few API calls a local node run makes (hack/localnode.py, hack/nodehost.py), with the
standard library only: the Node's readiness, its registration taint, its deletion."""

from __future__ import annotations

import contextlib
import json
import ssl
import urllib.error
import urllib.request
from typing import Any

from localcluster import ControlPlane

NOT_READY_TAINT = "node.kubernetes.io/not-ready"


def api_record(plane: ControlPlane) -> dict[str, str]:
    c = plane.certs
    return {
        "server": plane.server,
        "ca": str(c / "ca.crt"),
        "cert": str(c / "admin.crt"),
        "key": str(c / "admin.key"),
    }


class KubeApi:
    """The few Node calls a node run makes, as the control plane's admin."""

    def __init__(self, api: dict[str, str]) -> None:
        self.server = api["server"]
        self.context = ssl.create_default_context(cafile=api["ca"])
        self.context.load_cert_chain(api["cert"], api["key"])

    def request(
        self, method: str, path: str, body: object = None, content_type: str = "application/json"
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.server + path, data=data, method=method, headers={"Content-Type": content_type}
        )
        with urllib.request.urlopen(request, context=self.context, timeout=5) as response:
            return json.loads(response.read() or b"null")

    def node(self, name: str) -> Any:
        try:
            return self.request("GET", f"/api/v1/nodes/{name}")
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise

    def untaint(self, name: str) -> bool:
        """Remove the not-ready taint the API server put on the new Node (nothing else here
        would: the local control plane runs no node-lifecycle controller)."""
        node = self.node(name)
        taints = node["spec"].get("taints", [])
        kept = [t for t in taints if t["key"] != NOT_READY_TAINT]
        if kept == taints:
            return True
        patch = [
            {"op": "test", "path": "/spec/taints", "value": taints},
            {"op": "replace", "path": "/spec/taints", "value": kept},
        ]
        with contextlib.suppress(urllib.error.HTTPError):  # a concurrent update: next round
            self.request("PATCH", f"/api/v1/nodes/{name}", patch, "application/json-patch+json")
        return False


def delete(api: dict[str, str], path: str) -> None:
    """Best effort: the control plane (or its certificates) may be gone already."""
    with contextlib.suppress(urllib.error.URLError, OSError, ssl.SSLError):
        KubeApi(api).request("DELETE", path)


def delete_node(api: dict[str, str], name: str) -> None:
    delete(api, f"/api/v1/nodes/{name}")


def is_ready(node: Any) -> bool:
    conditions = (node or {}).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def http_ok(url: str) -> bool:
    try:
        context = ssl._create_unverified_context()  # a self-signed serving cert; /healthz is open
        with urllib.request.urlopen(url, context=context, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
