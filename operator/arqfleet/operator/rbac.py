"""Pure: the RBAC rules the operator needs, for cluster-wide and namespaced installs.

"Exactly the verbs used": every rule below is a request the operator (our KubeClient or kopf)
makes, and the integration suite proves it both ways by running the operator under these
rules alone and comparing them with the API server's audit log of its requests.
"""

from __future__ import annotations

from typing import Any

from arqfleet.operator import constants as c

Rule = dict[str, list[str]]


def _rule(group: str, resources: list[str], verbs: list[str]) -> Rule:
    return {"apiGroups": [group], "resources": resources, "verbs": verbs}


# Requests the operator makes in a namespace it watches.
NAMESPACED_RULES: list[Rule] = [
    # kopf lists and watches JobQueues, and patches their annotations (its diff-base and
    # handler progress); we patch /status.
    _rule(c.GROUP, [c.PLURAL], ["get", "list", "watch", "patch"]),
    _rule(c.GROUP, [f"{c.PLURAL}/status"], ["patch"]),
    # Authorization-only, never a request: with the OwnerReferencesPermissionEnforcement
    # admission plugin, setting blockOwnerDeletion on a Deployment requires this.
    _rule(c.GROUP, [f"{c.PLURAL}/finalizers"], ["update"]),
    # Server-side apply creates and updates; kopf watches ours for drift and status.
    _rule("apps", ["deployments"], ["get", "list", "watch", "create", "patch"]),
    _rule("apps", ["deployments/scale"], ["patch"]),
    _rule("policy", ["poddisruptionbudgets"], ["get", "create", "patch", "delete"]),
    # The PodMonitor of each JobQueue; read and deleted when monitoring.podMonitor turns off.
    _rule(c.PODMONITOR_GROUP, [c.PODMONITOR_PLURAL], ["get", "create", "patch", "delete"]),
    # The Redis URL may live in a Secret: read that one object (never list or watch).
    _rule("", ["secrets"], ["get"]),
    # Worker pods (ours, by label): kopf watches them, so a crash-looping pod is explained in
    # the JobQueue's status; we list them to explain why workers are not ready, and the
    # scaler annotates them with a pod-deletion-cost just before a scale-down.
    _rule("", ["pods"], ["list", "watch", "patch"]),
    _rule("", ["events"], ["create"]),
]

# Permissions checked by admission or authorization, never seen as requests in the audit log:
# - blockOwnerDeletion needs update on the owner's finalizers (see above);
# - a server-side apply that creates the object is a PATCH request, but the API server also
#   authorizes it as `create` (measured: without it the first apply is forbidden).
AUTHORIZATION_ONLY: set[tuple[str, str, str]] = {
    (c.GROUP, f"{c.PLURAL}/finalizers", "update"),
    ("apps", "deployments", "create"),
    ("policy", "poddisruptionbudgets", "create"),
    (c.PODMONITOR_GROUP, c.PODMONITOR_PLURAL, "create"),
}


def _meta(name: str, namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/name": "arqfleet"}}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def _subject(service_account: str, namespace: str) -> dict[str, str]:
    return {"kind": "ServiceAccount", "name": service_account, "namespace": namespace}


def clusterwide(
    name: str = "arqfleet-operator",
    *,
    service_account: str = "arqfleet-operator",
    namespace: str = "arqfleet-system",
) -> list[dict[str, Any]]:
    """ClusterRole + ClusterRoleBinding for an operator that watches every namespace."""
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": _meta(name),
            "rules": NAMESPACED_RULES,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": _meta(name),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": [_subject(service_account, namespace)],
        },
    ]


def namespaced(
    watched: list[str],
    name: str = "arqfleet-operator",
    *,
    service_account: str = "arqfleet-operator",
    namespace: str = "arqfleet-system",
) -> list[dict[str, Any]]:
    """A Role + RoleBinding in each watched namespace; nothing cluster-scoped at all."""
    objects: list[dict[str, Any]] = []
    for watched_ns in watched:
        objects.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": _meta(name, watched_ns),
                "rules": NAMESPACED_RULES,
            }
        )
        objects.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": _meta(name, watched_ns),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [_subject(service_account, namespace)],
            }
        )
    return objects


def granted() -> set[tuple[str, str, str]]:
    """(group, resource, verb) triples the rules grant."""
    return {
        (group, resource, verb)
        for rule in NAMESPACED_RULES
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
