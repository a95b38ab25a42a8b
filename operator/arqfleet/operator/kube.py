"""Every Kubernetes API call arqfleet makes itself (kopf makes its own watch calls).

All requests go through `KubeClient._request`, which records (verb, group, resource) so a test
can compare what the operator really did with the RBAC rules it ships. Objects travel as plain
JSON dicts: the same shapes `workload` renders and the API server returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException

from arqfleet.operator import constants as c

log = logging.getLogger(__name__)
T = TypeVar("T")

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"


@dataclass(frozen=True)
class Kind:
    """Where a kind of object lives in the API."""

    group: str  # "" for the core group
    version: str
    plural: str

    def path(self, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
        base = "/api/v1" if not self.group else f"/apis/{self.group}/{self.version}"
        path = f"{base}/namespaces/{quote(namespace)}/{self.plural}"
        if name is not None:
            path += f"/{quote(name)}"
        if subresource is not None:
            path += f"/{subresource}"
        return path


DEPLOYMENTS = Kind("apps", "v1", "deployments")
PDBS = Kind("policy", "v1", "poddisruptionbudgets")
PODMONITORS = Kind(c.PODMONITOR_GROUP, c.PODMONITOR_VERSION, c.PODMONITOR_PLURAL)
JOBQUEUES = Kind(c.GROUP, c.VERSION, c.PLURAL)
SECRETS = Kind("", "v1", "secrets")
PODS = Kind("", "v1", "pods")
EVENTS = Kind("", "v1", "events")


@dataclass(frozen=True)
class Call:
    """One API call, as RBAC sees it."""

    verb: str
    group: str
    resource: str  # plural, or plural/subresource


def is_gone(error: BaseException) -> bool:
    """The object or its namespace is gone or going: nothing left to reconcile."""
    if not isinstance(error, ApiException):
        return False
    if error.status == 404:
        return True
    body = error.body.decode() if isinstance(error.body, bytes) else str(error.body or "")
    return error.status == 403 and "NamespaceTerminating" in body


def is_conflict(error: BaseException) -> bool:
    return isinstance(error, ApiException) and error.status == 409


async def retry_conflicts(
    action: Callable[[], Awaitable[T]], *, attempts: int = 5, base_delay: float = 0.2
) -> T:
    """Run `action` again on 409 Conflict with exponential backoff (the object moved)."""
    for attempt in range(attempts):
        try:
            return await action()
        except ApiException as error:
            if error.status != 409 or attempt == attempts - 1:
                raise
            await asyncio.sleep(base_delay * 2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover


# Answers worth asking again: the API server is busy (429, priority and fairness), restarting
# or behind a failing proxy (5xx). A refused object is a 4xx and is never retried.
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
# Attempts of one call, and the first back-off (doubled each time): a call gives up within
# about a second and a half of back-off, on top of its timeouts.
ATTEMPTS = 3
FIRST_BACKOFF_SECONDS = 0.5


def is_transient(error: BaseException) -> bool:
    """Would asking again likely get another answer? (never for a refused object)"""
    if isinstance(error, ApiException):
        if error.status == 500 and "failed to create typed patch object" in str(error.body):
            return False  # server-side apply's "wrong shape": the object, not the server
        return error.status in RETRIED_STATUSES
    return isinstance(error, TimeoutError | aiohttp.ClientError)


@dataclass
class KubeClient:
    api: client.ApiClient
    calls: set[Call] = field(default_factory=set)
    timeout_seconds: float = 30.0
    """Total time of one request: kubernetes_asyncio's default is no limit at all, and one
    hung call would hold its JobQueue's lock (and so its scaling) forever."""

    @classmethod
    async def connect(
        cls, kubeconfig: str | None = None, *, timeout_seconds: float = 30.0
    ) -> KubeClient:
        """In-cluster credentials when running in a pod, else the kubeconfig (like kubectl)."""
        configuration = client.Configuration()
        try:
            if kubeconfig is not None:
                raise ConfigException("kubeconfig given")
            config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
        except ConfigException:
            await config.load_kube_config(
                config_file=kubeconfig, client_configuration=configuration
            )
        return cls(client.ApiClient(configuration), timeout_seconds=timeout_seconds)

    async def close(self) -> None:
        await self.api.close()

    async def _request(
        self,
        verb: str,
        kind: Kind,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        query: list[tuple[str, str]] | None = None,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        resource = kind.plural + (f"/{subresource}" if subresource else "")
        self.calls.add(Call(verb, kind.group, resource))
        # Every call we make is idempotent (reads, server-side applies, merge patches of fixed
        # values, deletes) except creating an Event, which is not worth a duplicate.
        attempts = 1 if verb == "create" else ATTEMPTS
        for attempt in range(attempts):
            try:
                result: dict[str, Any] = await self.api.call_api(
                    path,
                    method,
                    query_params=query or [],
                    header_params={"Content-Type": content_type, "Accept": "application/json"},
                    body=body,
                    response_types_map={200: "object", 201: "object"},
                    auth_settings=["BearerToken"],
                    _return_http_data_only=True,
                    _request_timeout=self.timeout_seconds,
                )
                return result
            except Exception as error:
                if attempt == attempts - 1 or not is_transient(error):
                    raise
                log.info("%s %s: %s, trying again", method, path, _brief(error))
                await asyncio.sleep(FIRST_BACKOFF_SECONDS * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def get(
        self, kind: Kind, namespace: str, name: str, *, subresource: str | None = None
    ) -> dict[str, Any] | None:
        """The object, or None if it does not exist."""
        try:
            return await self._request(
                "get", kind, "GET", kind.path(namespace, name, subresource), subresource=subresource
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def list(self, kind: Kind, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        listed = await self._request(
            "list", kind, "GET", kind.path(namespace), query=[("labelSelector", label_selector)]
        )
        items: list[dict[str, Any]] = listed.get("items") or []
        return items

    async def apply(
        self,
        kind: Kind,
        body: dict[str, Any],
        *,
        manager: str = c.FIELD_MANAGER,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """Server-side apply: we own what `body` lists and nothing else. `force` takes the
        fields back from whoever edited them (drift repair); other fields are left alone."""
        meta = body["metadata"]
        return await self._request(
            "patch",
            kind,
            "PATCH",
            kind.path(meta["namespace"], meta["name"], subresource),
            body=body,
            content_type=APPLY,
            query=[("fieldManager", manager), ("force", "true")],
            subresource=subresource,
        )

    async def merge_patch(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        patch: dict[str, Any],
        *,
        subresource: str | None = None,
        manager: str = c.FIELD_MANAGER,
    ) -> dict[str, Any]:
        return await self._request(
            "patch",
            kind,
            "PATCH",
            kind.path(namespace, name, subresource),
            body=patch,
            content_type=MERGE,
            query=[("fieldManager", manager)],
            subresource=subresource,
        )

    async def post_event(
        self, target: Mapping[str, Any], type_: str, reason: str, message: str, *, now: str
    ) -> None:
        """Create a core/v1 Event about `target` (apiVersion, kind, metadata name/namespace/uid).

        The scaling loop posts its own Events: kopf's poster only works inside kopf's per-object
        handler tasks."""
        meta = target["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": target["apiVersion"],
                "kind": target["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],  # as kopf does: Events are for people, not payloads
            "source": {"component": c.EVENT_COMPONENT},
            "reportingComponent": c.EVENT_COMPONENT,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self._request("create", EVENTS, "POST", EVENTS.path(meta["namespace"]), body=body)

    async def delete(self, kind: Kind, namespace: str, name: str) -> None:
        try:
            await self._request("delete", kind, "DELETE", kind.path(namespace, name))
        except ApiException as error:
            if error.status != 404:
                raise

    async def has_api(self, group: str, version: str, plural: str) -> bool:
        """Is this API served? (discovery: e.g. is the PodMonitor CRD installed)."""
        try:
            resources = await self.api.call_api(
                f"/apis/{group}/{version}",
                "GET",
                header_params={"Accept": "application/json"},
                response_types_map={200: "object"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _request_timeout=self.timeout_seconds,
            )
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return any(r.get("name") == plural for r in resources.get("resources") or ())

    async def version(self) -> str:
        info = await self.api.call_api(
            "/version",
            "GET",
            header_params={"Accept": "application/json"},
            response_types_map={200: "object"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
            _request_timeout=self.timeout_seconds,
        )
        return str(info.get("gitVersion"))


def _brief(error: BaseException) -> str:
    if isinstance(error, ApiException):
        return f"{error.status} {error.reason}"
    return type(error).__name__
