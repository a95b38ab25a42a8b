"""Pure rendering: a JobQueue -> its worker Deployment, PodDisruptionBudget and PodMonitor.

The objects are server-side apply configurations: they list exactly the fields arqfleet owns,
nothing the API server defaults, and never `spec.replicas` for an existing Deployment (the
scaling loop owns that through the scale subresource). No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from arqfleet.operator import constants as c
from arqfleet.operator.models import JobQueueSpec, WorkerSpec


@dataclass(frozen=True)
class JobQueueRef:
    """Identity of the owning JobQueue, for names, labels and the ownerReference."""

    name: str
    namespace: str
    uid: str

    @property
    def worker_name(self) -> str:
        return c.worker_name(self.name)


def selector_labels(ref: JobQueueRef) -> dict[str, str]:
    """The Deployment selector: immutable once created, so only the two stable labels."""
    return {c.LABEL_MANAGED_BY: c.MANAGED_BY, c.LABEL_JOBQUEUE: ref.name}


def common_labels(ref: JobQueueRef) -> dict[str, str]:
    return {
        c.LABEL_NAME: c.WORKER_APP_NAME,
        c.LABEL_INSTANCE: ref.name,
        c.LABEL_COMPONENT: "worker",
        **selector_labels(ref),
    }


def owner_reference(ref: JobQueueRef) -> dict[str, Any]:
    # controller + blockOwnerDeletion: the garbage collector deletes the Deployment with its
    # JobQueue, and foreground deletion of the JobQueue waits for it.
    return {
        "apiVersion": c.API_VERSION,
        "kind": "JobQueue",
        "name": ref.name,
        "uid": ref.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(ref: JobQueueRef) -> dict[str, Any]:
    return {
        "name": ref.worker_name,
        "namespace": ref.namespace,
        "labels": common_labels(ref),
        "ownerReferences": [owner_reference(ref)],
    }


def redis_url_env(spec: JobQueueSpec) -> dict[str, Any]:
    """ARQFLEET_REDIS_URL: inline only when the URL has no password (the CRD enforces that)."""
    ref = spec.redis.url_secret_ref
    if ref is not None:
        return {
            "name": c.ENV_REDIS_URL,
            "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}},
        }
    return {"name": c.ENV_REDIS_URL, "value": spec.redis.url}


def worker_env(spec: JobQueueSpec) -> list[dict[str, Any]]:
    worker = spec.worker
    env: list[dict[str, Any]] = [
        redis_url_env(spec),
        {"name": c.ENV_QUEUE_NAME, "value": spec.queue_name},
        {"name": c.ENV_MAX_JOBS, "value": str(worker.max_jobs)},
        {"name": c.ENV_JOB_TIMEOUT, "value": str(worker.job_timeout_seconds)},
        {"name": c.ENV_DRAIN, "value": str(worker.drain_seconds)},
        {"name": c.ENV_HTTP_PORT, "value": str(c.WORKER_HTTP_PORT)},
        {
            "name": c.ENV_POD_NAME,
            "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
        },
    ]
    for var in worker.env or ():
        env.append(var.model_dump(by_alias=True, exclude_none=True))
    return env


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": c.WORKER_HTTP_PORT_NAME},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


# Pod Security "restricted" by default: the worker needs no privilege, no capability and no
# writable root (only /tmp, an emptyDir). worker.securityContext / podSecurityContext override
# single fields (e.g. runAsUser for an image whose USER is a name) and the CRD keeps them
# within "restricted" unless worker.podSecurity says otherwise.
CONTAINER_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
POD_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _overlay(defaults: dict[str, Any], overrides: BaseModel | None) -> dict[str, Any]:
    """The defaults with each field the user set replaced (a whole field: capabilities too)."""
    merged = dict(defaults)
    if overrides is not None:
        merged.update(overrides.model_dump(by_alias=True, exclude_none=True))
    return merged


def worker_container(spec: JobQueueSpec) -> dict[str, Any]:
    worker = spec.worker
    container: dict[str, Any] = {
        "name": c.WORKER_CONTAINER,
        "image": worker.image,
        # Our runtime as the entrypoint (PID 1, no shell), the user's settings as its argument.
        "command": [c.WORKER_COMMAND],
        "args": [worker.settings],
        "env": worker_env(spec),
        "ports": [
            {
                "name": c.WORKER_HTTP_PORT_NAME,
                "containerPort": c.WORKER_HTTP_PORT,
                "protocol": "TCP",
            }
        ],
        # /healthz fails when the event loop stalls or Redis has been silent for long; three
        # misses before a restart, so one slow Redis moment does not kill running jobs.
        "livenessProbe": _probe("/healthz", period=10, failures=3),
        # /readyz flips false the moment a drain starts.
        "readinessProbe": _probe("/readyz", period=5, failures=1),
        "securityContext": _overlay(CONTAINER_SECURITY, worker.security_context),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        # A worker that fails (exit 2: cannot import the settings) writes no termination file;
        # with this policy kubelet puts its last log lines in lastState.terminated.message, where
        # the user and our Ready condition (status.pod_problem) find why it crash-loops.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if worker.image_pull_policy is not None:
        container["imagePullPolicy"] = worker.image_pull_policy
    if worker.resources is not None:
        container["resources"] = worker.resources.model_dump(by_alias=True, exclude_none=True)
    if worker.env_from:
        container["envFrom"] = [
            e.model_dump(by_alias=True, exclude_none=True) for e in worker.env_from
        ]
    return container


def _pod_knobs(worker: WorkerSpec) -> dict[str, Any]:
    """The user's scheduling and identity settings, copied through as given."""
    knobs: dict[str, Any] = {}
    if worker.node_selector:
        knobs["nodeSelector"] = dict(worker.node_selector)
    if worker.tolerations:
        knobs["tolerations"] = [
            t.model_dump(by_alias=True, exclude_none=True) for t in worker.tolerations
        ]
    if worker.affinity:
        knobs["affinity"] = worker.affinity
    if worker.topology_spread_constraints:
        knobs["topologySpreadConstraints"] = list(worker.topology_spread_constraints)
    if worker.image_pull_secrets:
        knobs["imagePullSecrets"] = [{"name": s.name} for s in worker.image_pull_secrets]
    if worker.priority_class_name:
        knobs["priorityClassName"] = worker.priority_class_name
    if worker.service_account_name:
        knobs["serviceAccountName"] = worker.service_account_name
    else:
        # Workers talk to Redis, not to the Kubernetes API: no token unless the user asks
        # for an identity by naming a ServiceAccount.
        knobs["automountServiceAccountToken"] = False
    return knobs


def pod_template(ref: JobQueueRef, spec: JobQueueSpec) -> dict[str, Any]:
    worker = spec.worker
    metadata: dict[str, Any] = {"labels": {**(worker.pod_labels or {}), **common_labels(ref)}}
    if worker.pod_annotations:
        metadata["annotations"] = dict(worker.pod_annotations)
    return {
        "metadata": metadata,
        "spec": {
            "containers": [worker_container(spec)],
            "terminationGracePeriodSeconds": (
                worker.drain_seconds + c.TERMINATION_GRACE_MARGIN_SECONDS
            ),
            "securityContext": _overlay(POD_SECURITY, worker.pod_security_context),
            "volumes": [{"name": "tmp", "emptyDir": {}}],
            **_pod_knobs(worker),
        },
    }


def deployment(
    ref: JobQueueRef, spec: JobQueueSpec, *, replicas: int | None = None
) -> dict[str, Any]:
    """The worker Deployment. `replicas` only when creating it (see the module docstring)."""
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(ref),
        "spec": {
            "selector": {"matchLabels": selector_labels(ref)},
            "revisionHistoryLimit": 3,
            # New pods come up before old ones drain, so a rollout never lowers throughput.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
            },
            "template": pod_template(ref, spec),
        },
    }
    if replicas is not None:
        body["spec"]["replicas"] = replicas
    return body


def initial_replicas(spec: JobQueueSpec, last_desired: int | None) -> int:
    """Replicas for a Deployment being created: the last decision if the JobQueue had one
    (the Deployment was deleted under a busy queue), else minReplicas."""
    scaling = spec.scaling
    if last_desired is None:
        return scaling.min_replicas
    return max(scaling.min_replicas, min(scaling.max_replicas, last_desired))


def pod_disruption_budget(ref: JobQueueRef, spec: JobQueueSpec) -> dict[str, Any] | None:
    budget = spec.worker.disruption_budget
    if budget is None:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(ref),
        "spec": {
            "maxUnavailable": budget.max_unavailable,
            "selector": {"matchLabels": selector_labels(ref)},
            # A crash-looping worker must not block node drains.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def _meta_label(label: str) -> str:
    """Prometheus's Kubernetes discovery name for a pod label (non-alphanumerics become _)."""
    return "__meta_kubernetes_pod_label_" + "".join(ch if ch.isalnum() else "_" for ch in label)


def pod_monitor(ref: JobQueueRef, spec: JobQueueSpec) -> dict[str, Any] | None:
    if not spec.monitoring.pod_monitor:
        return None
    return {
        "apiVersion": f"{c.PODMONITOR_GROUP}/{c.PODMONITOR_VERSION}",
        "kind": "PodMonitor",
        "metadata": _metadata(ref),
        "spec": {
            "selector": {"matchLabels": selector_labels(ref)},
            "podMetricsEndpoints": [
                {
                    "port": c.WORKER_HTTP_PORT_NAME,
                    "path": "/metrics",
                    "interval": spec.monitoring.interval,
                    # The worker's series carry no queue of their own: the alerts and the
                    # dashboard (deploy/) join them with the operator's by these two labels.
                    "relabelings": [
                        {
                            "sourceLabels": [_meta_label(c.LABEL_JOBQUEUE)],
                            "targetLabel": "jobqueue",
                        },
                        {"sourceLabels": ["__meta_kubernetes_pod_name"], "targetLabel": "pod"},
                    ],
                }
            ],
        },
    }


@dataclass(frozen=True)
class Plan:
    """What one reconcile writes: the Deployment (always, it is idempotent), the optional
    objects, and whether replicas still have to be handed to the scaler."""

    deployment: dict[str, Any]
    creates: bool  # the Deployment does not exist yet
    hand_off: bool  # spec.replicas is not yet co-owned by the scaler's field manager
    live_generation: int | None  # of the Deployment before this apply
    pdb: dict[str, Any] | None
    delete_pdb: bool
    pod_monitor: dict[str, Any] | None
    delete_pod_monitor: bool = False


def plan(
    ref: JobQueueRef,
    spec: JobQueueSpec,
    *,
    live: Mapping[str, Any] | None,
    scaler_owns_replicas: bool,
    last_desired: int | None,
    pdb_exists: bool,
    podmonitors_served: bool,
    podmonitor_exists: bool = False,
) -> Plan:
    """Decide the writes of one reconcile from what it observed."""
    if live is None:
        replicas: int | None = initial_replicas(spec, last_desired)
    elif not scaler_owns_replicas:
        # Until the scaler co-owns replicas, every apply keeps listing them, or server-side
        # apply would reset the field to its default of 1.
        replicas = int((live.get("spec") or {}).get("replicas", 0))
    else:
        replicas = None
    budget = pod_disruption_budget(ref, spec)
    monitor = pod_monitor(ref, spec)
    return Plan(
        deployment=deployment(ref, spec, replicas=replicas),
        creates=live is None,
        hand_off=not scaler_owns_replicas,
        live_generation=None if live is None else (live.get("metadata") or {}).get("generation"),
        pdb=budget,
        delete_pdb=budget is None and pdb_exists,
        pod_monitor=monitor if podmonitors_served else None,
        delete_pod_monitor=monitor is None and podmonitor_exists,
    )
