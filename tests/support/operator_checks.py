"""Async reads that operator tests wait on: Deployments, JobQueue conditions, Events."""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio.client import ApiClient, CoreV1Api, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from arqfleet.operator import models


async def create_jobqueue(
    api: ApiClient, namespace: str, name: str, spec: dict[str, Any]
) -> dict[str, Any]:
    body = {
        "apiVersion": f"{models.API_GROUP}/{models.API_VERSION}",
        "kind": models.KIND,
        "metadata": {"name": name},
        "spec": spec,
    }
    created: dict[str, Any] = await CustomObjectsApi(api).create_namespaced_custom_object(
        models.API_GROUP, models.API_VERSION, namespace, models.PLURAL, body
    )
    return created


async def get_jobqueue(api: ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = await CustomObjectsApi(api).get_namespaced_custom_object(
            models.API_GROUP, models.API_VERSION, namespace, models.PLURAL, name
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return found


async def get_deployment(api: ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    """The Deployment as plain JSON (camelCase, like the API server and `kubectl -o json`)."""
    return await get_path(api, f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")


async def ready_condition(
    api: ApiClient, namespace: str, name: str, kind: str = "Ready"
) -> dict[str, Any] | None:
    jq = await get_jobqueue(api, namespace, name)
    for condition in ((jq or {}).get("status") or {}).get("conditions") or ():
        if condition["type"] == kind:
            return dict(condition)
    return None


async def event_reasons(api: ApiClient, namespace: str, name: str) -> list[tuple[str, str]]:
    """(type, reason) of the Events about JobQueue `name`."""
    events = await CoreV1Api(api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name},involvedObject.kind=JobQueue"
    )
    return [(e.type, e.reason) for e in events.items]


async def get_path(api: ApiClient, path: str) -> dict[str, Any] | None:
    """Any object by its API path, as JSON, or None if it does not exist."""
    try:
        found: dict[str, Any] = await api.call_api(
            path,
            "GET",
            response_types_map={200: "object"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return found


async def list_pods(api: ApiClient, namespace: str, jobqueue: str) -> list[dict[str, Any]]:
    """The worker pods of a JobQueue, as JSON."""
    listed = await get_path(
        api,
        f"/api/v1/namespaces/{namespace}/pods?labelSelector=arqfleet.io%2Fjobqueue%3D{jobqueue}",
    )
    return list((listed or {}).get("items") or [])
