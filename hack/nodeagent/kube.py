"""The agent's API access (raw JSON through kubernetes_asyncio) and what its modules share."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST_IP = "127.0.0.1"
PORTS_ANNOTATION = "nodeagent.arqfleet.io/host-ports"
log = logging.getLogger("nodeagent")
Obj = dict[str, Any]


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST_IP, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Kube:
    """Raw-JSON access to the API server through kubernetes_asyncio's ApiClient."""

    api: Any  # kubernetes_asyncio.client.ApiClient (untyped)

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
    ) -> Obj:
        content = "application/merge-patch+json" if method == "PATCH" else "application/json"
        result: Obj = await self.api.call_api(
            path,
            method,
            query_params=query or [],
            header_params={"Content-Type": content, "Accept": "application/json"},
            body=body,
            response_types_map={200: "object", 201: "object", 202: "object"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
        )
        return result

    async def maybe(self, method: str, path: str, *, body: Any = None) -> Obj | None:
        """`call`, but None when the object is gone (404) or changed identity (409)."""
        try:
            return await self.call(method, path, body=body)
        except ApiException as error:
            if error.status in (404, 409):
                return None
            raise

    async def watch(self, path: str, selector: str) -> AsyncIterator[tuple[str, Obj]]:
        """List then watch, forever. Yields ("RELIST", list) after every (re)list, then events."""
        while True:
            try:
                listed = await self.call("GET", path, query=[("fieldSelector", selector)])
                version = listed["metadata"]["resourceVersion"]
                yield "RELIST", listed
                while True:
                    query = [
                        ("fieldSelector", selector),
                        ("watch", "true"),
                        ("resourceVersion", version),
                        ("allowWatchBookmarks", "true"),
                        ("timeoutSeconds", "50"),
                    ]
                    response = await self.api.call_api(
                        path,
                        "GET",
                        query_params=query,
                        header_params={"Accept": "application/json"},
                        auth_settings=["BearerToken"],
                        _preload_content=False,
                        _request_timeout=70,
                    )
                    try:
                        async for line in response.content:
                            event = json.loads(line)
                            if event["type"] == "ERROR":  # 410 Gone: relist
                                raise RuntimeError(f"watch error: {event['object']}")
                            version = event["object"]["metadata"]["resourceVersion"]
                            if event["type"] != "BOOKMARK":
                                yield event["type"], event["object"]
                    finally:
                        response.release()
            except Exception as error:  # anything but cancellation: relist, never give up
                log.warning("watch %s?%s: %s; relisting", path, selector, error)
                await asyncio.sleep(1)
