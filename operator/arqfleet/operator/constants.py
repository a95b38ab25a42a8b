"""Names the operator writes into the cluster: labels, annotations, field managers, env vars.

One module, so a rename is one edit and a reader can see every key arqfleet claims. Pure.
"""

from __future__ import annotations

from typing import Final

from arqfleet.operator import models

# -- labels on everything we create (ARCHITECTURE.md) ---------------------------------------
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "arqfleet"
LABEL_JOBQUEUE: Final = "arqfleet.io/jobqueue"
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
WORKER_APP_NAME: Final = "arqfleet-worker"
MANAGED_SELECTOR: Final = f"{LABEL_MANAGED_BY}={MANAGED_BY}"

# Kubernetes' own annotation: the ReplicaSet controller deletes lower-cost pods first, so
# stamping idle pods with a low cost makes a scale-down take them before busy ones.
POD_DELETION_COST: Final = "controller.kubernetes.io/pod-deletion-cost"

# -- server-side apply field managers ---------------------------------------------------------
# `arqfleet` owns every Deployment field it renders except spec.replicas; `arqfleet-scaler`
# owns spec.replicas (written through the scale subresource), so re-applying the workload
# never resets a replica count the scaling loop chose.
FIELD_MANAGER: Final = "arqfleet"
SCALER_FIELD_MANAGER: Final = "arqfleet-scaler"
# The `source.component` / `reportingComponent` of every Event arqfleet posts.
EVENT_COMPONENT: Final = "arqfleet-operator"

# -- the worker pod ---------------------------------------------------------------------------
WORKER_CONTAINER: Final = "worker"
WORKER_COMMAND: Final = "arqfleet-worker"
WORKER_HTTP_PORT: Final = 8080
WORKER_HTTP_PORT_NAME: Final = "http"
# After drainSeconds the runtime cancels what still runs, writes its last heartbeat and exits;
# this margin covers that plus interpreter shutdown before the kubelet's SIGKILL.
TERMINATION_GRACE_MARGIN_SECONDS: Final = 15

# The worker runtime's environment (arqfleet.worker.settings.WorkerEnv, prefix ARQFLEET_).
ENV_REDIS_URL: Final = "ARQFLEET_REDIS_URL"
ENV_QUEUE_NAME: Final = "ARQFLEET_QUEUE_NAME"
ENV_MAX_JOBS: Final = "ARQFLEET_MAX_JOBS"
ENV_JOB_TIMEOUT: Final = "ARQFLEET_JOB_TIMEOUT_SECONDS"
ENV_DRAIN: Final = "ARQFLEET_DRAIN_SECONDS"
ENV_HTTP_PORT: Final = "ARQFLEET_HTTP_PORT"
ENV_POD_NAME: Final = "ARQFLEET_POD_NAME"

# -- the JobQueue resource --------------------------------------------------------------------
GROUP: Final = models.API_GROUP
VERSION: Final = models.API_VERSION
PLURAL: Final = models.PLURAL
API_VERSION: Final = f"{GROUP}/{VERSION}"

# -- optional integrations --------------------------------------------------------------------
PODMONITOR_GROUP: Final = "monitoring.coreos.com"
PODMONITOR_VERSION: Final = "v1"
PODMONITOR_PLURAL: Final = "podmonitors"


def worker_name(jobqueue: str) -> str:
    """The name of the Deployment, PodDisruptionBudget and PodMonitor of a JobQueue."""
    return f"{jobqueue}-worker"
