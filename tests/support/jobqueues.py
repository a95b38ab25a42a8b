"""JobQueue objects for tests: the examples, and a table of invalid ones.

The invalid table is used twice: the real API server must reject each row naming the field,
and the pydantic models (the CRD's source) must reject the same rows.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from arqfleet.operator import models

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    return loaded


def minimal_spec() -> dict[str, Any]:
    return {
        "redis": {"url": "redis://redis:6379/0"},
        "worker": {"image": "app:1", "settings": "app.worker.WorkerSettings"},
    }


def jobqueue(name: str, spec: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": f"{models.API_GROUP}/{models.API_VERSION}",
        "kind": models.KIND,
        "metadata": {"name": name},
    }
    if spec is not None:
        body["spec"] = spec
    return body


@dataclass(frozen=True)
class Invalid:
    id: str
    path: tuple[str, ...]  # where to set the value inside spec; () replaces spec itself
    value: Any  # DELETE removes the key
    message: str  # a fragment the API server's error must contain (names the field)
    name: str = "bad"

    def spec(self) -> dict[str, Any] | None:
        spec = minimal_spec()
        if not self.path:
            return None if self.value is DELETE else self.value
        node = spec
        for key in self.path[:-1]:
            node = node.setdefault(key, {})
        if self.value is DELETE:
            node.pop(self.path[-1], None)
        else:
            node[self.path[-1]] = copy.deepcopy(self.value)
        return spec


DELETE = object()

INVALID: list[Invalid] = [
    Invalid("no-spec", (), DELETE, "spec: Required value"),
    Invalid("no-redis", ("redis",), DELETE, "spec.redis: Required value"),
    Invalid("redis-neither", ("redis",), {}, "exactly one of redis.url or redis.urlSecretRef"),
    Invalid(
        "redis-both",
        ("redis",),
        {"url": "redis://r:6379", "urlSecretRef": {"name": "s", "key": "url"}},
        "exactly one of redis.url or redis.urlSecretRef",
    ),
    Invalid("url-scheme", ("redis", "url"), "http://r:6379", "spec.redis.url: Invalid value"),
    Invalid(
        "url-password", ("redis", "url"), "redis://:hunter2@r:6379/0", "must not contain a password"
    ),
    Invalid(
        "url-user-password",
        ("redis", "url"),
        "rediss://app:hunter2@r:6380/0",
        "spec.redis.url: Invalid value",
    ),
    Invalid(
        "url-query-password",
        ("redis", "url"),
        "redis://r:6379/0?password=hunter2",
        "must not contain a password",
    ),
    Invalid(
        "secret-ref-no-key",
        ("redis",),
        {"urlSecretRef": {"name": "creds"}},
        "spec.redis.urlSecretRef.key: Required value",
    ),
    Invalid(
        "secret-ref-bad-name",
        ("redis",),
        {"urlSecretRef": {"name": "Bad_Name", "key": "url"}},
        "spec.redis.urlSecretRef.name",
    ),
    Invalid("queue-empty", ("queueName",), "", "spec.queueName"),
    Invalid("no-worker", ("worker",), DELETE, "spec.worker: Required value"),
    Invalid("no-image", ("worker", "image"), DELETE, "spec.worker.image: Required value"),
    Invalid("empty-image", ("worker", "image"), "", "spec.worker.image"),
    Invalid("settings-spaces", ("worker", "settings"), "app worker", "spec.worker.settings"),
    Invalid("settings-no-attr", ("worker", "settings"), "WorkerSettings", "spec.worker.settings"),
    Invalid("max-jobs-zero", ("worker", "maxJobs"), 0, "spec.worker.maxJobs"),
    Invalid("max-jobs-string", ("worker", "maxJobs"), "ten", "spec.worker.maxJobs"),
    Invalid(
        "timeout-negative", ("worker", "jobTimeoutSeconds"), -1, "spec.worker.jobTimeoutSeconds"
    ),
    Invalid(
        "drain-shorter-than-timeout",
        ("worker", "drainSeconds"),
        100,
        "spec.worker.drainSeconds: Invalid value",
    ),
    Invalid(
        "pull-policy-enum",
        ("worker", "imagePullPolicy"),
        "Sometimes",
        "spec.worker.imagePullPolicy",
    ),
    Invalid(
        "reserved-pod-label",
        ("worker", "podLabels"),
        {"arqfleet.io/jobqueue": "other"},
        "spec.worker.podLabels: Invalid value",
    ),
    Invalid(
        "env-name", ("worker", "env"), [{"name": "1 BAD", "value": "x"}], "spec.worker.env[0].name"
    ),
    Invalid(
        "toleration-operator",
        ("worker", "tolerations"),
        [{"key": "k", "operator": "Maybe"}],
        "spec.worker.tolerations[0].operator",
    ),
    Invalid(
        "service-account-name",
        ("worker", "serviceAccountName"),
        "Bad_SA",
        "spec.worker.serviceAccountName",
    ),
    Invalid("unknown-worker-field", ("worker", "replicas"), 3, "spec.worker.replicas"),
    Invalid(
        "privileged-under-restricted",
        ("worker", "securityContext"),
        {"privileged": True},
        "spec.worker.securityContext.privileged: Invalid value",
    ),
    Invalid(
        "root-user-under-restricted",
        ("worker", "securityContext"),
        {"runAsUser": 0},
        "spec.worker.securityContext.runAsUser: Invalid value",
    ),
    Invalid(
        "added-capability-under-restricted",
        ("worker", "securityContext"),
        {"capabilities": {"add": ["SYS_ADMIN"], "drop": ["ALL"]}},
        "spec.worker.securityContext.capabilities: Invalid value",
    ),
    Invalid(
        "unconfined-pod-under-restricted",
        ("worker", "podSecurityContext"),
        {"seccompProfile": {"type": "Unconfined"}},
        "spec.worker.podSecurityContext.seccompProfile: Invalid value",
    ),
    Invalid(
        "pod-security-level",
        ("worker", "podSecurity"),
        "lenient",
        "spec.worker.podSecurity",
    ),
    Invalid(
        "min-above-max",
        ("scaling",),
        {"minReplicas": 5, "maxReplicas": 2},
        "spec.scaling.minReplicas: Invalid value",
    ),
    Invalid("max-zero", ("scaling", "maxReplicas"), 0, "spec.scaling.maxReplicas"),
    Invalid("min-negative", ("scaling", "minReplicas"), -1, "spec.scaling.minReplicas"),
    Invalid(
        "jobs-per-replica-zero", ("scaling", "jobsPerReplica"), 0, "spec.scaling.jobsPerReplica"
    ),
    Invalid("max-wait-zero", ("scaling", "maxWaitSeconds"), 0, "spec.scaling.maxWaitSeconds"),
    Invalid("activation-zero", ("scaling", "activationJobs"), 0, "spec.scaling.activationJobs"),
    Invalid("poll-zero", ("scaling", "pollSeconds"), 0, "spec.scaling.pollSeconds"),
    Invalid(
        "scale-up-max-pods-zero",
        ("scaling", "scaleUp"),
        {"maxPods": 0},
        "spec.scaling.scaleUp.maxPods",
    ),
    Invalid(
        "scale-down-percent-over-100",
        ("scaling", "scaleDown"),
        {"maxPercent": 150},
        "spec.scaling.scaleDown.maxPercent",
    ),
    Invalid(
        "scale-down-window-too-long",
        ("scaling", "scaleDown"),
        {"stabilizationSeconds": 7200},
        "spec.scaling.scaleDown.stabilizationSeconds",
    ),
    Invalid("paused-string", ("paused",), "yes", "spec.paused"),
    Invalid(
        "env-sets-arqfleet-variable",
        ("worker", "env"),
        [{"name": "ARQFLEET_QUEUE_NAME", "value": "other"}],
        "spec.worker.env: Invalid value",
    ),
    Invalid(
        "env-duplicate-name",
        ("worker", "env"),
        [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}],
        "spec.worker.env[1]: Duplicate value",
    ),
    Invalid(
        "pod-monitor-interval",
        ("monitoring", "interval"),
        "every minute",
        "spec.monitoring.interval",
    ),
    Invalid(
        "name-too-long",
        ("queueName",),
        "arq:queue",
        "metadata.name must be at most 56 characters",
        name="a" * 57,
    ),
]
