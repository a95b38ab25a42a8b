"""The JobQueue API (arqfleet.io/v1alpha1) as pydantic models: the single source of truth.

The CRD's OpenAPI schema (defaults, bounds, enums) and its CEL rules are rendered from these
models by `arqfleet.operator.crd`, so the API server rejects a bad object before the operator
ever sees it. The same rules are checked again here in Python, so a model built in code (tests,
the operator reading an object written before a rule existed) obeys the same contract.

The fields that are Kubernetes types (resources, env, envFrom, nodeSelector, tolerations,
affinity, topology spread, pod labels and annotations) take their schema from the pinned
release's own core/v1 OpenAPI spec, plus what Go validation adds (arqfleet.operator.core_v1):
they are declared with `CoreV1(...)` and checked by the same data in both places.

This module does no I/O (the core/v1 data is package data, read on first use).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

from arqfleet.operator import redis_url
from arqfleet.operator.core_v1 import CoreV1

API_GROUP = "arqfleet.io"
API_VERSION = "v1alpha1"
KIND = "JobQueue"
PLURAL = "jobqueues"
SINGULAR = "jobqueue"
SHORT_NAMES = ["jq"]
CATEGORIES = ["arqfleet", "all"]

# Label values are at most 63 characters, and the worker Deployment is named "<name>-worker".
MAX_NAME_LENGTH = 63 - len("-worker")

# Labels the operator puts on everything it creates; users may not override them through
# worker.podLabels, or the Deployment's selector would stop matching its own pods.
RESERVED_LABELS = ("app.kubernetes.io/managed-by", "arqfleet.io/jobqueue")

PYTHON_IMPORT_PATH = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$"
# RFC 1123 DNS subdomain: what Kubernetes accepts for Secret and ServiceAccount names.
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# An image reference as the container runtime parses it (github.com/distribution/reference
# v0.6.0 ReferenceRegexp, with \w spelled out as ASCII): a space, a capital in the repository or
# a stray ":" fails only when the kubelet pulls, long after the JobQueue was accepted.
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
IMAGE_REFERENCE = (
    rf"^(?:{_DOMAIN}/)?{_PATH_PART}(?:/{_PATH_PART})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)


def cel(rule: str, message: str, field_path: str | None = None) -> JsonDict:
    """One x-kubernetes-validations entry; fieldPath makes the error name the field."""
    entry: JsonDict = {"rule": rule, "message": message}
    if field_path is not None:
        entry["fieldPath"] = field_path
    return entry


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are errors, not ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        # Strict: the API server sends typed JSON, and "yes" must not become True here when
        # the schema rejects it there.
        strict=True,
    )


class SecretKeyRef(ApiModel):
    """A key in a Secret in the JobQueue's namespace."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
    key: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")


class RedisSpec(ApiModel):
    """Where the queue lives. Exactly one of url / urlSecretRef; a password only in a Secret.

    The URL's rules (parsed: scheme, host, port, database, no password) are in
    arqfleet.operator.redis_url."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.url) != has(self.urlSecretRef)",
                    "exactly one of redis.url or redis.urlSecretRef must be set",
                ),
                *redis_url.cel_rules(),
            ]
        }
    )

    url: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="redis://[user@]host[:port][/db] or rediss://...; no password (use "
        "urlSecretRef).",
    )
    url_secret_ref: SecretKeyRef | None = None

    @model_validator(mode="after")
    def _check(self) -> RedisSpec:
        if (self.url is None) == (self.url_secret_ref is None):
            raise ValueError("exactly one of redis.url or redis.urlSecretRef must be set")
        if self.url is not None:
            found = redis_url.problems(self.url)
            if found:  # the message only, never the URL: it may hold a password
                raise ValueError(redis_url.MESSAGES[found[0]])
        return self


# core/v1 types the operator reads field by field. Their schema (and their checks, run before
# these models parse) are core/v1's: see the CoreV1 fields of WorkerSpec. The types here only
# give the operator typed access, so they are no stricter than the schema.


class ResourceRequirements(ApiModel):
    """core/v1 ResourceRequirements: quantities as Kubernetes writes them ("500m", "1Gi", 2)."""

    limits: dict[str, int | str] | None = None
    requests: dict[str, int | str] | None = None


class EnvVar(ApiModel):
    """core/v1 EnvVar: an extra container environment variable."""

    name: str
    value: str | None = None
    value_from: dict[str, Any] | None = None


class LocalObjectReference(ApiModel):
    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)


class EnvFromSource(ApiModel):
    """core/v1 EnvFromSource: a whole ConfigMap or Secret as environment."""

    prefix: str | None = None
    config_map_ref: dict[str, Any] | None = None
    secret_ref: dict[str, Any] | None = None


class Toleration(ApiModel):
    """core/v1 Toleration."""

    key: str | None = None
    operator: str | None = None
    value: str | None = None
    effect: str | None = None
    toleration_seconds: int | None = None


class Capabilities(ApiModel):
    """Linux capabilities to add to or drop from the container (core/v1 Capabilities)."""

    add: list[str] | None = Field(default=None, max_length=64)
    drop: list[str] | None = Field(default=None, max_length=64)


class SeccompProfile(ApiModel):
    type: Literal["RuntimeDefault", "Localhost", "Unconfined"]
    localhost_profile: str | None = Field(default=None, max_length=256)


class ContainerSecurityContext(ApiModel):
    """Overrides of the worker container's security context (core/v1 SecurityContext fields).

    Merged over arqfleet's restricted defaults field by field: set only what your image needs,
    e.g. `runAsUser` for an image without a numeric USER."""

    run_as_user: int | None = Field(default=None, ge=0)
    run_as_group: int | None = Field(default=None, ge=0)
    run_as_non_root: bool | None = None
    read_only_root_filesystem: bool | None = None
    allow_privilege_escalation: bool | None = None
    privileged: bool | None = None
    capabilities: Capabilities | None = None
    seccomp_profile: SeccompProfile | None = None


class PodSecurityContext(ApiModel):
    """Overrides of the worker pod's security context (core/v1 PodSecurityContext fields)."""

    run_as_user: int | None = Field(default=None, ge=0)
    run_as_group: int | None = Field(default=None, ge=0)
    run_as_non_root: bool | None = None
    fs_group: int | None = Field(default=None, ge=0)
    fs_group_change_policy: Literal["OnRootMismatch", "Always"] | None = None
    supplemental_groups: list[int] | None = Field(default=None, max_length=32)
    seccomp_profile: SeccompProfile | None = None


# What Pod Security "restricted" forbids of the fields above (kubernetes.io/docs/concepts/
# security/pod-security-standards), as CEL over a security context `$`: the pod's checks are
# a subset of the container's. `_restricted_problems` is the same judgement in Python.
RESTRICTED_CEL = {
    "runAsNonRoot": "!has($.runAsNonRoot) || $.runAsNonRoot",
    "runAsUser": "!has($.runAsUser) || $.runAsUser != 0",
    "seccompProfile": "!has($.seccompProfile) || $.seccompProfile.type != 'Unconfined'",
}
RESTRICTED_CONTAINER_CEL = {
    **RESTRICTED_CEL,
    "privileged": "!has($.privileged) || !$.privileged",
    "allowPrivilegeEscalation": "!has($.allowPrivilegeEscalation) || !$.allowPrivilegeEscalation",
    "capabilities": "!has($.capabilities) || ((!has($.capabilities.add) || "
    "$.capabilities.add.all(c, c == 'NET_BIND_SERVICE')) && (!has($.capabilities.drop) || "
    "$.capabilities.drop.exists(c, c == 'ALL')))",
}


def _restricted_rules(field: str, rules: dict[str, str]) -> list[JsonDict]:
    """One CEL rule per field ($ stands for the security context), each naming its field."""
    return [
        cel(
            f"self.podSecurity != 'restricted' || !has(self.{field}) || ({check})".replace(
                "$.", f"self.{field}."
            ),
            f"worker.{field}.{name} breaks Pod Security 'restricted' (set "
            "worker.podSecurity: baseline or privileged to allow it)",
            f".{field}.{name}",
        )
        for name, check in rules.items()
    ]


def _restricted_problems(context: BaseModel | None, container: bool) -> list[str]:
    """The fields of `context` that break "restricted", as the CEL rules above decide."""
    if context is None:
        return []
    found = []
    if getattr(context, "run_as_non_root", None) is False:
        found.append("runAsNonRoot")
    if getattr(context, "run_as_user", None) == 0:
        found.append("runAsUser")
    seccomp = getattr(context, "seccomp_profile", None)
    if seccomp is not None and seccomp.type == "Unconfined":
        found.append("seccompProfile")
    if container:
        if getattr(context, "privileged", None):
            found.append("privileged")
        if getattr(context, "allow_privilege_escalation", None):
            found.append("allowPrivilegeEscalation")
        caps = getattr(context, "capabilities", None)
        if caps is not None and (
            any(c != "NET_BIND_SERVICE" for c in caps.add or ())
            or (caps.drop is not None and "ALL" not in caps.drop)
        ):
            found.append("capabilities")
    return found


class DisruptionBudget(ApiModel):
    """PodDisruptionBudget for the worker pods (drains evict through it)."""

    max_unavailable: int | str = Field(
        default=1, description="Pods that may be evicted at once: a number or a percentage."
    )


class MonitoringSpec(ApiModel):
    """Prometheus scraping of the worker pods."""

    pod_monitor: bool = Field(
        default=True,
        description="Create a PodMonitor when the monitoring.coreos.com CRD is installed.",
    )
    interval: str = Field(default="30s", pattern=r"^[0-9]+(ms|s|m|h)$", max_length=16)


class WorkerSpec(ApiModel):
    """The worker pods: the user's image and ARQ settings, ARQ limits, and the usual pod knobs."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.drainSeconds >= self.jobTimeoutSeconds",
                    "worker.drainSeconds must be >= worker.jobTimeoutSeconds, or a job that "
                    "is still allowed to run would be killed during a scale-down",
                    ".drainSeconds",
                ),
                cel(
                    "!has(self.env) || self.env.all(e, !e.name.startsWith('ARQFLEET_'))",
                    "worker.env must not set ARQFLEET_* variables: arqfleet sets them from "
                    "the JobQueue's own fields",
                    ".env",
                ),
                cel(
                    "!has(self.podLabels) || !self.podLabels.exists(k, "
                    "k == 'app.kubernetes.io/managed-by' || k == 'arqfleet.io/jobqueue')",
                    "worker.podLabels must not set app.kubernetes.io/managed-by or "
                    "arqfleet.io/jobqueue: arqfleet owns those labels",
                    ".podLabels",
                ),
                *_restricted_rules("securityContext", RESTRICTED_CONTAINER_CEL),
                *_restricted_rules("podSecurityContext", RESTRICTED_CEL),
            ]
        }
    )

    image: str = Field(
        min_length=1,
        max_length=1024,
        pattern=IMAGE_REFERENCE,
        description="The user's app image, e.g. ghcr.io/acme/app:1.4.2.",
    )
    settings: str = Field(
        min_length=3,
        max_length=512,
        pattern=PYTHON_IMPORT_PATH,
        description="Import path of the user's ARQ WorkerSettings, e.g. app.worker.WorkerSettings.",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    max_jobs: int = Field(default=10, ge=1, le=1000, description="ARQ max_jobs per pod.")
    job_timeout_seconds: int = Field(default=300, ge=1, le=86400, description="ARQ job_timeout.")
    drain_seconds: int = Field(
        default=330,
        ge=0,
        le=86400,
        description="On SIGTERM, time to finish in-flight jobs before they are cancelled.",
    )
    resources: Annotated[ResourceRequirements | None, CoreV1("Container.resources")] = None
    # core/v1 keeps env a map keyed by name: the API server rejects duplicate names, which
    # server-side apply of the Deployment would otherwise refuse later, far from the user.
    env: Annotated[list[EnvVar] | None, CoreV1("Container.env", max_items=128)] = None
    env_from: Annotated[list[EnvFromSource] | None, CoreV1("Container.envFrom", max_items=64)] = (
        None
    )
    node_selector: Annotated[dict[str, str] | None, CoreV1("PodSpec.nodeSelector")] = None
    tolerations: Annotated[list[Toleration] | None, CoreV1("PodSpec.tolerations", max_items=64)] = (
        None
    )
    affinity: Annotated[dict[str, Any] | None, CoreV1("PodSpec.affinity")] = None
    topology_spread_constraints: Annotated[
        list[dict[str, Any]] | None, CoreV1("PodSpec.topologySpreadConstraints", max_items=16)
    ] = None
    service_account_name: str | None = Field(default=None, max_length=253, pattern=DNS_SUBDOMAIN)
    image_pull_secrets: list[LocalObjectReference] | None = Field(
        default=None,
        max_length=16,
        # Keyed by name as in core/v1 PodSpec: server-side apply of the Deployment refuses a
        # list-map with a name twice.
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    priority_class_name: str | None = Field(default=None, max_length=253, pattern=DNS_SUBDOMAIN)
    pod_labels: Annotated[dict[str, str] | None, CoreV1("ObjectMeta.labels", max_properties=64)] = (
        None
    )
    pod_annotations: Annotated[
        dict[str, str] | None, CoreV1("ObjectMeta.annotations", max_properties=64)
    ] = None
    disruption_budget: DisruptionBudget | None = Field(
        default=None,
        description="If set, a PodDisruptionBudget limits voluntary evictions of worker pods.",
    )
    security_context: ContainerSecurityContext | None = None
    pod_security_context: PodSecurityContext | None = None
    pod_security: Literal["restricted", "baseline", "privileged"] = Field(
        default="restricted",
        description="The Pod Security level the overrides must stay within: restricted "
        "(default), or baseline/privileged to allow what restricted forbids.",
    )

    @model_validator(mode="after")
    def _check(self) -> WorkerSpec:
        if self.drain_seconds < self.job_timeout_seconds:
            raise ValueError("worker.drainSeconds must be >= worker.jobTimeoutSeconds")
        if any(e.name.startswith("ARQFLEET_") for e in self.env or ()):
            raise ValueError("worker.env must not set ARQFLEET_* variables")
        for field, items in (("env", self.env), ("imagePullSecrets", self.image_pull_secrets)):
            names = [item.name for item in items or ()]
            if len(names) != len(set(names)):
                raise ValueError(f"worker.{field} has duplicate names")
        reserved = sorted(set(self.pod_labels or {}) & set(RESERVED_LABELS))
        if reserved:
            raise ValueError(f"worker.podLabels must not set {', '.join(reserved)}")
        if self.pod_security == "restricted":
            for field, context, container in (
                ("securityContext", self.security_context, True),
                ("podSecurityContext", self.pod_security_context, False),
            ):
                for name in _restricted_problems(context, container):
                    raise ValueError(
                        f"worker.{field}.{name} breaks Pod Security 'restricted' (set "
                        "worker.podSecurity: baseline or privileged to allow it)"
                    )
        return self


class ScaleUpPolicy(ApiModel):
    """How fast replicas may grow: HPA-style stabilization plus per-period step limits."""

    stabilization_seconds: int = Field(default=0, ge=0, le=3600)
    max_percent: int = Field(default=100, ge=1, le=1000)
    max_pods: int = Field(default=4, ge=1, le=1000)
    period_seconds: int = Field(default=15, ge=1, le=1800)


class ScaleDownPolicy(ApiModel):
    """How fast replicas may shrink; the window is what stops flapping (300 s is HPA's)."""

    # 60 s, not HPA's 300 s: a job queue's load is exact (no CPU noise to ride out) and its
    # idle pods are known, so the window only guards against re-starting pods for the next
    # wave. In bench/sim, 300 s held every burst's peak for five minutes and spent more
    # replica-seconds than KEDA + HPA; 60 s spends 4-65 % fewer at the same or a lower p95
    # wait (bench/RESULTS.md).
    stabilization_seconds: int = Field(default=60, ge=0, le=3600)
    max_percent: int = Field(default=100, ge=1, le=100)
    period_seconds: int = Field(default=15, ge=1, le=1800)


class ScalingSpec(ApiModel):
    """The autoscaler's targets and limits."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.minReplicas <= self.maxReplicas",
                    "scaling.minReplicas must be <= scaling.maxReplicas",
                    ".minReplicas",
                ),
            ]
        }
    )

    min_replicas: int = Field(default=0, ge=0, le=1000)
    max_replicas: int = Field(default=20, ge=1, le=1000)
    jobs_per_replica: int | None = Field(
        default=None,
        ge=1,
        le=100000,
        description="Target (ready + running) jobs per pod; defaults to worker.maxJobs.",
    )
    max_wait_seconds: int | None = Field(
        default=None,
        ge=1,
        le=86400,
        description="If the oldest ready job has waited longer than this, scale up.",
    )
    activation_jobs: int = Field(
        default=1, ge=1, le=100000, description="Ready jobs needed to wake from zero."
    )
    poll_seconds: int = Field(default=5, ge=1, le=300)
    scale_up: ScaleUpPolicy = ScaleUpPolicy()
    scale_down: ScaleDownPolicy = ScaleDownPolicy()

    @model_validator(mode="after")
    def _check(self) -> ScalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError("scaling.minReplicas must be <= scaling.maxReplicas")
        return self


class JobQueueSpec(ApiModel):
    """What users write in a JobQueue."""

    redis: RedisSpec
    queue_name: str = Field(
        default="arq:queue", min_length=1, max_length=256, description="The ARQ queue key."
    )
    worker: WorkerSpec
    scaling: ScalingSpec = ScalingSpec()
    paused: bool = Field(default=False, description="Freeze replicas; still observe and report.")
    monitoring: MonitoringSpec = MonitoringSpec()


class QueueStatus(ApiModel):
    """The queue as last observed in Redis."""

    ready: int = Field(default=0, ge=0)
    deferred: int = Field(default=0, ge=0)
    in_progress: int = Field(default=0, ge=0)
    dead_letters: int = Field(default=0, ge=0)
    oldest_ready_time: str | None = Field(
        default=None,
        description="When the oldest ready job became due (absent when none is ready).",
        json_schema_extra={"format": "date-time"},
    )


class HeldRecommendation(ApiModel):
    """A past recommendation and when it stopped being the latest."""

    replicas: int = Field(ge=0)
    until: str = Field(json_schema_extra={"format": "date-time"})


class ReplicaChange(ApiModel):
    """A change of replicas the scaler made, for the per-period step policies."""

    at: str = Field(json_schema_extra={"format": "date-time"})
    delta: int


class ScalingHistory(ApiModel):
    """What the stabilization windows and step policies remember (written by the operator,
    so that a restart resumes the same windows). Changes only when a recommendation does."""

    recommendation: int | None = Field(default=None, ge=0)
    # A window deque holds at most one entry per quantum of its window (61 at most), and
    # changes at most one per poll within the longest policy period (1800 s at 1 s polls).
    up: list[HeldRecommendation] | None = Field(default=None, max_length=128)
    down: list[HeldRecommendation] | None = Field(default=None, max_length=128)
    changes: list[ReplicaChange] | None = Field(default=None, max_length=2048)
    cron_discovery_since: str | None = Field(
        default=None, json_schema_extra={"format": "date-time"}
    )


class Condition(ApiModel):
    """metav1.Condition, per the Kubernetes API conventions."""

    type: str = Field(min_length=1, max_length=316)
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(
        min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
    )
    message: str = Field(default="", max_length=32768)
    last_transition_time: str = Field(json_schema_extra={"format": "date-time"})
    observed_generation: int | None = Field(default=None, ge=0)


class JobQueueStatus(ApiModel):
    """Written by the operator only, through the status subresource."""

    observed_generation: int | None = Field(default=None, ge=0)
    replicas: int | None = Field(default=None, ge=0)
    ready_replicas: int | None = Field(default=None, ge=0)
    desired_replicas: int | None = Field(default=None, ge=0)
    queue: QueueStatus | None = None
    last_scale_time: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    last_scale_reason: str | None = Field(default=None, max_length=1024)
    history: ScalingHistory | None = None
    conditions: list[Condition] | None = Field(
        default=None,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
