"""JobQueue objects for tests: the examples, a table of invalid ones and one of valid ones.

The invalid table is used twice: the real API server must reject each row naming the field,
and the pydantic models (the CRD's source) must reject the same rows, except the few marked
server-only (with the reason). Rows are grouped by category, each holding what a careless or
hostile user writes. The valid table holds unusual but correct values that both must accept,
so that no rule is stricter than it means to be.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from arqfleet.operator import models, redis_url

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
    server_only: str = ""  # why the models cannot refuse this row (empty: they must)

    def spec(self) -> dict[str, Any] | None:
        if not self.path:
            return None if self.value is DELETE else self.value
        return with_value(self.path, self.value)


def with_value(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """The minimal spec with `value` at `path` (DELETE removes the key)."""
    spec = minimal_spec()
    node = spec
    for key in path[:-1]:
        node = node.setdefault(key, {})
    if value is DELETE:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = copy.deepcopy(value)
    return spec


DELETE = object()
METADATA_ONLY = "metadata.name is the API server's to check; the models see only the spec"


def _url(id: str, value: str, problem: str) -> Invalid:
    return Invalid(id, ("redis", "url"), value, f"spec.redis.url: Invalid value: {URL[problem]}")


def _worker(id: str, field: str, value: Any, message: str) -> Invalid:
    return Invalid(id, ("worker", field), value, message)


URL = redis_url.MESSAGES
# What is pasted into redis.url: stray whitespace, a password, a port where the database goes.
REDIS_URLS = [
    _url("url-trailing-space", "redis://redis:6379/0 ", "characters"),
    _url("url-trailing-newline", "redis://redis:6379/0\n", "characters"),
    _url("url-non-breaking-space", "redis://redis\u00a0:6379/0", "characters"),
    _url("url-fragment", "redis://redis:6379/0#primary", "characters"),
    _url("url-no-scheme", "redis.default.svc:6379", "scheme"),
    _url("url-unix-socket", "unix:///var/run/redis.sock", "scheme"),
    _url("url-no-host", "redis://:6379/0", "host"),
    _url("url-empty-authority", "redis:///0", "host"),
    _url("url-port-not-a-number", "redis://redis:port/0", "host"),
    _url("url-two-at-signs", "redis://app@@redis:6379/0", "host"),
    _url("url-angle-bracket-host", "redis://redis<b>:6379/0", "host"),
    _url("url-bracketed-non-ipv6", "redis://[10]:6379/0", "ip"),
    _url("url-port-zero", "redis://redis:0/0", "port"),
    _url("url-port-too-large", "redis://redis:65536/0", "port"),
    _url("url-database-16", "redis://redis:6379/16", "path"),
    _url("url-port-as-database", "redis://redis/6379", "path"),
    _url("url-database-name", "redis://redis:6379/queue", "path"),
    _url("url-negative-database", "redis://redis:6379/-1", "path"),
    _url("url-escaped-password-key", "redis://redis:6379/0?pass%77ord=hunter2", "password"),
]

# Labels and annotations: YAML turns `true` and `2` into non-strings; spaces and capitals.
LABELS_AND_ANNOTATIONS = [
    _worker(
        "label-value-space", "podLabels", {"team": "data science"}, "spec.worker.podLabels.team"
    ),
    _worker(
        "label-value-too-long", "podLabels", {"team": "d" * 64}, "spec.worker.podLabels.team: Too"
    ),
    _worker("label-value-number", "podLabels", {"version": 2}, "spec.worker.podLabels.version"),
    _worker(
        "label-key-space",
        "podLabels",
        {"team name": "data"},
        "spec.worker.podLabels: Invalid value: keys must be label keys",
    ),
    _worker(
        "label-key-capital-prefix",
        "podLabels",
        {"Example.com/team": "data"},
        "spec.worker.podLabels: Invalid value: keys must be label keys",
    ),
    _worker(
        "label-key-two-slashes",
        "podLabels",
        {"example.com/a/b": "x"},
        "spec.worker.podLabels: Invalid value: keys must be label keys",
    ),
    _worker(
        "annotation-unquoted-true",
        "podAnnotations",
        {"prometheus.io/scrape": True},
        "spec.worker.podAnnotations.prometheus.io/scrape",
    ),
    _worker(
        "annotation-key-space",
        "podAnnotations",
        {"release note": "x"},
        "spec.worker.podAnnotations: Invalid value: keys must be annotation keys",
    ),
    _worker(
        "annotations-too-large",
        "podAnnotations",
        {"blob": "x" * (256 * 1024)},
        "spec.worker.podAnnotations: Invalid value: annotations may hold at most 256 KiB",
    ),
]

NODE_SELECTORS = [
    _worker("node-selector-unquoted-true", "nodeSelector", {"gpu": True}, "nodeSelector.gpu"),
    _worker(
        "node-selector-value-slash",
        "nodeSelector",
        {"pool": "batch/large"},
        "spec.worker.nodeSelector.pool",
    ),
    _worker(
        "node-selector-key-space",
        "nodeSelector",
        {"disk type": "ssd"},
        "spec.worker.nodeSelector: Invalid value: keys must be label keys",
    ),
    _worker("node-selector-as-list", "nodeSelector", ["pool=batch"], "spec.worker.nodeSelector"),
]

_NAMES = "resource names are cpu, memory, ephemeral-storage"
RESOURCES = [
    # A float is a JSON number, which no structural schema admits beside integers and strings
    # (as in kubebuilder CRDs): the message names the field, and "0.5" works.
    _worker(
        "cpu-float", "resources", {"requests": {"cpu": 0.5}}, "spec.worker.resources.requests.cpu"
    ),
    _worker(
        "memory-gigabytes-suffix",
        "resources",
        {"limits": {"memory": "1GB"}},
        "spec.worker.resources.limits.memory",
    ),
    _worker(
        "memory-lowercase-suffix",
        "resources",
        {"requests": {"memory": "512mi"}},
        "spec.worker.resources.requests.memory",
    ),
    _worker(
        "cpu-words",
        "resources",
        {"requests": {"cpu": "half"}},
        "spec.worker.resources.requests.cpu",
    ),
    _worker(
        "cpu-negative",
        "resources",
        {"requests": {"cpu": "-500m"}},
        "spec.worker.resources.requests: Invalid value: quantities must be non-negative",
    ),
    _worker(
        "quantity-fractional-exponent",
        "resources",
        {"requests": {"memory": "1e1.5"}},
        "spec.worker.resources.requests: Invalid value: quantities must be non-negative",
    ),
    _worker(
        "resource-name-typo",
        "resources",
        {"requests": {"mem": "1Gi"}},
        f"spec.worker.resources.requests: Invalid value: {_NAMES}",
    ),
    _worker(
        "resource-name-capitals",
        "resources",
        {"limits": {"CPU": "1"}},
        f"spec.worker.resources.limits: Invalid value: {_NAMES}",
    ),
    _worker(
        "gpu-without-vendor",
        "resources",
        {"limits": {"gpu": 1}},
        f"spec.worker.resources.limits: Invalid value: {_NAMES}",
    ),
    _worker(
        "gpu-fraction",
        "resources",
        {"limits": {"nvidia.com/gpu": "0.5"}},
        "spec.worker.resources.limits: Invalid value: extended resources",
    ),
    _worker(
        "resources-singular-request",
        "resources",
        {"request": {"cpu": "1"}},
        "spec.worker.resources.request",
    ),
    _worker(
        "resources-claims",
        "resources",
        {"claims": [{"name": "gpu"}]},
        "spec.worker.resources.claims",
    ),
]

_ABOVE = "spec.worker.resources.requests: Invalid value: requests must not exceed limits"
_OVERCOMMIT = "spec.worker.resources.requests: Invalid value: hugepages and extended resources"
REQUESTS_ABOVE_LIMITS = [
    _worker(
        "cpu-request-above-limit",
        "resources",
        {"requests": {"cpu": 2}, "limits": {"cpu": "1"}},
        _ABOVE,
    ),
    _worker(
        "memory-request-above-limit",
        "resources",
        {"requests": {"memory": "2Gi"}, "limits": {"memory": "1500Mi"}},
        _ABOVE,
    ),
    _worker(
        "millicpu-request-above-limit",
        "resources",
        {"requests": {"cpu": "1500m"}, "limits": {"cpu": "1.2"}},
        _ABOVE,
    ),
    _worker(
        "gpu-request-without-limit",
        "resources",
        {"requests": {"nvidia.com/gpu": 1}},
        _OVERCOMMIT,
    ),
    _worker(
        "hugepages-request-below-limit",
        "resources",
        {"requests": {"hugepages-2Mi": "2Mi"}, "limits": {"hugepages-2Mi": "4Mi", "memory": "1Gi"}},
        _OVERCOMMIT,
    ),
]

_T = "spec.worker.tolerations[0]"
TOLERATIONS = [
    _worker(
        "toleration-lowercase-operator",
        "tolerations",
        [{"key": "k", "operator": "exists"}],
        f"{_T}.operator: Unsupported value",
    ),
    _worker(
        "toleration-gated-operator",
        "tolerations",
        [{"key": "cpu", "operator": "Lt", "value": "8"}],
        f"{_T}.operator: Unsupported value",
    ),
    _worker(
        "toleration-effect-typo",
        "tolerations",
        [{"key": "k", "operator": "Exists", "effect": "NoSchedul"}],
        f"{_T}.effect: Unsupported value",
    ),
    _worker(
        "toleration-no-key-with-equal",
        "tolerations",
        [{"operator": "Equal", "value": "batch"}],
        f"{_T}.operator: Invalid value: operator must be Exists when key is empty",
    ),
    _worker(
        "toleration-exists-with-value",
        "tolerations",
        [{"key": "workload", "operator": "Exists", "value": "batch"}],
        f"{_T}.value: Invalid value: value must be empty when operator is Exists",
    ),
    _worker(
        "toleration-seconds-without-noexecute",
        "tolerations",
        [{"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 60}],
        f"{_T}.effect: Invalid value: effect must be NoExecute",
    ),
    _worker(
        "toleration-seconds-string",
        "tolerations",
        [{"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": "60s"}],
        f"{_T}.tolerationSeconds",
    ),
    _worker(
        "toleration-value-space",
        "tolerations",
        [{"key": "workload", "operator": "Equal", "value": "batch jobs"}],
        f"{_T}.value",
    ),
    _worker(
        "toleration-key-space",
        "tolerations",
        [{"key": "dedicated to", "operator": "Exists"}],
        f"{_T}.key: Invalid value: key must be a label key",
    ),
    _worker(
        "tolerations-not-a-list",
        "tolerations",
        {"key": "k", "operator": "Exists"},
        "spec.worker.tolerations",
    ),
]

_NODE = "spec.worker.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
_TERM = f"{_NODE}.nodeSelectorTerms[0]"
_POD = "spec.worker.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0]"


def _required_node(*expressions: dict[str, Any], **term: Any) -> dict[str, Any]:
    selector = {"nodeSelectorTerms": [{"matchExpressions": list(expressions), **term}]}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": selector}}


def _anti(**term: Any) -> dict[str, Any]:
    return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}


_SELECTOR = {"matchLabels": {"arqfleet.io/jobqueue": "bad"}}
AFFINITY = [
    _worker(
        "affinity-misspelled", "affinity", {"nodeAfinity": {}}, "spec.worker.affinity.nodeAfinity"
    ),
    _worker(
        "affinity-short-field-name",
        "affinity",
        {"nodeAffinity": {"requiredDuringScheduling": {}}},
        "spec.worker.affinity.nodeAffinity.requiredDuringScheduling",
    ),
    _worker(
        "affinity-string",
        "affinity",
        {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": "soon"}},
        f"{_NODE}: Invalid value",
    ),
    _worker(
        "affinity-terms-as-list",
        "affinity",
        {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [{"matchExpressions": []}]
            }
        },
        _NODE,
    ),
    _worker(
        "affinity-no-terms",
        "affinity",
        {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}
            }
        },
        f"{_NODE}.nodeSelectorTerms",
    ),
    _worker(
        "affinity-lowercase-operator",
        "affinity",
        _required_node({"key": "pool", "operator": "in", "values": ["batch"]}),
        f"{_TERM}.matchExpressions[0].operator: Unsupported value",
    ),
    _worker(
        "affinity-in-without-values",
        "affinity",
        _required_node({"key": "pool", "operator": "In"}),
        f"{_TERM}.matchExpressions[0].values: Invalid value: values must not be empty",
    ),
    _worker(
        "affinity-exists-with-values",
        "affinity",
        _required_node({"key": "pool", "operator": "Exists", "values": ["batch"]}),
        f"{_TERM}.matchExpressions[0].values: Invalid value: values must be empty",
    ),
    _worker(
        "affinity-gt-two-values",
        "affinity",
        _required_node({"key": "cores", "operator": "Gt", "values": ["4", "8"]}),
        f"{_TERM}.matchExpressions[0].values: Invalid value: values must hold exactly one",
    ),
    _worker(
        "affinity-values-as-string",
        "affinity",
        _required_node({"key": "pool", "operator": "In", "values": "batch"}),
        f"{_TERM}.matchExpressions[0].values",
    ),
    _worker(
        "affinity-match-fields-on-a-label",
        "affinity",
        _required_node(matchFields=[{"key": "pool", "operator": "In", "values": ["batch"]}]),
        f"{_TERM}.matchFields: Invalid value: matchFields supports only key metadata.name",
    ),
    _worker(
        "affinity-weight-zero",
        "affinity",
        {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 0, "preference": {}}]
            }
        },
        "preferredDuringSchedulingIgnoredDuringExecution[0].weight",
    ),
    _worker(
        "affinity-weight-over-100",
        "affinity",
        {
            "podAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 500, "podAffinityTerm": {"topologyKey": "zone"}}
                ]
            }
        },
        "spec.worker.affinity.podAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight",
    ),
    _worker(
        "pod-affinity-no-topology-key",
        "affinity",
        _anti(labelSelector=_SELECTOR),
        f"{_POD}.topologyKey: Required value",
    ),
    _worker(
        "pod-affinity-topology-key-space",
        "affinity",
        _anti(topologyKey="my zone", labelSelector=_SELECTOR),
        f"{_POD}.topologyKey: Invalid value: topologyKey must be a label key",
    ),
    _worker(
        "pod-affinity-selector-value-space",
        "affinity",
        _anti(topologyKey="zone", labelSelector={"matchLabels": {"app": "my app"}}),
        f"{_POD}.labelSelector.matchLabels.app",
    ),
    _worker(
        "pod-affinity-selector-gt",
        "affinity",
        _anti(
            topologyKey="zone",
            labelSelector={"matchExpressions": [{"key": "v", "operator": "Gt", "values": ["1"]}]},
        ),
        f"{_POD}.labelSelector.matchExpressions[0].operator: Unsupported value",
    ),
    _worker(
        "pod-affinity-namespace-capitals",
        "affinity",
        _anti(topologyKey="zone", labelSelector=_SELECTOR, namespaces=["Default"]),
        f"{_POD}.namespaces[0]",
    ),
    _worker(
        "pod-affinity-match-label-keys-without-selector",
        "affinity",
        _anti(topologyKey="zone", matchLabelKeys=["pod-template-hash"]),
        f"{_POD}.matchLabelKeys: Invalid value: matchLabelKeys and mismatchLabelKeys need",
    ),
]

_S = "spec.worker.topologySpreadConstraints"


def _spread(**fields: Any) -> list[dict[str, Any]]:
    constraint = {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}
    return [{**constraint, **fields}]


TOPOLOGY_SPREAD = [
    _worker(
        "spread-max-skew-zero", "topologySpreadConstraints", _spread(maxSkew=0), f"{_S}[0].maxSkew"
    ),
    _worker(
        "spread-max-skew-string",
        "topologySpreadConstraints",
        _spread(maxSkew="1"),
        f"{_S}[0].maxSkew",
    ),
    _worker(
        "spread-when-unsatisfiable-missing",
        "topologySpreadConstraints",
        [{"maxSkew": 1, "topologyKey": "zone"}],
        f"{_S}[0].whenUnsatisfiable: Required value",
    ),
    _worker(
        "spread-when-unsatisfiable-typo",
        "topologySpreadConstraints",
        _spread(whenUnsatisfiable="DoNotSchedul"),
        f"{_S}[0].whenUnsatisfiable: Unsupported value",
    ),
    _worker(
        "spread-min-domains-with-schedule-anyway",
        "topologySpreadConstraints",
        _spread(whenUnsatisfiable="ScheduleAnyway", minDomains=3),
        f"{_S}[0].minDomains: Invalid value: minDomains needs whenUnsatisfiable: DoNotSchedule",
    ),
    _worker(
        "spread-policy-lowercase",
        "topologySpreadConstraints",
        _spread(nodeTaintsPolicy="honor"),
        f"{_S}[0].nodeTaintsPolicy: Unsupported value",
    ),
    _worker(
        "spread-topology-key-space",
        "topologySpreadConstraints",
        _spread(topologyKey="availability zone"),
        f"{_S}[0].topologyKey: Invalid value: topologyKey must be a label key",
    ),
    _worker(
        "spread-duplicate",
        "topologySpreadConstraints",
        _spread() + _spread(maxSkew=2),
        f"{_S}[1]: Duplicate value",
    ),
    _worker(
        "spread-match-label-keys-without-selector",
        "topologySpreadConstraints",
        _spread(matchLabelKeys=["pod-template-hash"]),
        f"{_S}[0].matchLabelKeys: Invalid value: matchLabelKeys need a labelSelector",
    ),
    _worker(
        "spread-selector-misspelled",
        "topologySpreadConstraints",
        _spread(labelSelectors=_SELECTOR),
        f"{_S}[0].labelSelectors",
    ),
]

_E = "spec.worker.env[0]"
_F = "spec.worker.envFrom[0]"


def _env_from(source: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": "X", "valueFrom": source}]


ENVIRONMENT = [
    _worker("env-value-number", "env", [{"name": "WORKERS", "value": 4}], f"{_E}.value"),
    _worker("env-as-map", "env", {"LOG_LEVEL": "info"}, "spec.worker.env"),
    _worker("env-no-name", "env", [{"value": "info"}], f"{_E}.name: Required value"),
    _worker(
        "env-value-and-value-from",
        "env",
        [{"name": "X", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        f"{_E}.valueFrom: Invalid value: set value or valueFrom, not both",
    ),
    _worker("env-value-from-empty", "env", _env_from({}), f"{_E}.valueFrom: Invalid value"),
    _worker(
        "env-value-from-two-sources",
        "env",
        _env_from(
            {
                "secretKeyRef": {"name": "s", "key": "k"},
                "configMapKeyRef": {"name": "c", "key": "k"},
            }
        ),
        f"{_E}.valueFrom: Invalid value: valueFrom needs exactly one",
    ),
    _worker(
        "env-secret-key-ref-no-name",
        "env",
        _env_from({"secretKeyRef": {"key": "token"}}),
        f"{_E}.valueFrom.secretKeyRef.name: Required value",
    ),
    _worker(
        "env-secret-key-with-slash",
        "env",
        _env_from({"secretKeyRef": {"name": "s", "key": "tokens/api"}}),
        f"{_E}.valueFrom.secretKeyRef.key",
    ),
    _worker(
        "env-secret-key-dot-dot",
        "env",
        _env_from({"secretKeyRef": {"name": "s", "key": "..data"}}),
        f"{_E}.valueFrom.secretKeyRef.key",
    ),
    _worker(
        "env-secret-ref-instead-of-key-ref",
        "env",
        _env_from({"secretRef": {"name": "s", "key": "k"}}),
        f"{_E}.valueFrom.secretRef",
    ),
    _worker(
        "env-field-path-dotted-label",
        "env",
        _env_from({"fieldRef": {"fieldPath": "metadata.labels.app"}}),
        f"{_E}.valueFrom.fieldRef.fieldPath: Invalid value: fieldPath must be one of",
    ),
    _worker(
        "env-field-path-container",
        "env",
        _env_from({"fieldRef": {"fieldPath": "spec.containers[0].image"}}),
        f"{_E}.valueFrom.fieldRef.fieldPath: Invalid value",
    ),
    _worker(
        "env-field-ref-api-version",
        "env",
        _env_from({"fieldRef": {"apiVersion": "apps/v1", "fieldPath": "metadata.name"}}),
        f"{_E}.valueFrom.fieldRef.apiVersion: Unsupported value",
    ),
    _worker(
        "env-resource-field-gpu",
        "env",
        _env_from({"resourceFieldRef": {"resource": "limits.nvidia.com/gpu"}}),
        f"{_E}.valueFrom.resourceFieldRef.resource: Invalid value",
    ),
    _worker(
        "env-resource-field-cpu-in-mebibytes",
        "env",
        _env_from({"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1Mi"}}),
        f"{_E}.valueFrom.resourceFieldRef.divisor: Invalid value",
    ),
    _worker("env-from-empty", "envFrom", [{}], f"{_F}: Invalid value: set exactly one of"),
    _worker(
        "env-from-both",
        "envFrom",
        [{"configMapRef": {"name": "a"}, "secretRef": {"name": "b"}}],
        f"{_F}: Invalid value: set exactly one of",
    ),
    _worker(
        "env-from-no-name", "envFrom", [{"configMapRef": {}}], f"{_F}.configMapRef.name: Required"
    ),
    _worker(
        "env-from-prefix-equals",
        "envFrom",
        [{"secretRef": {"name": "s"}, "prefix": "APP="}],
        f"{_F}.prefix",
    ),
    _worker(
        "env-from-secret-key",
        "envFrom",
        [{"secretRef": {"name": "s", "key": "url"}}],
        f"{_F}.secretRef.key",
    ),
]

NAMES = [
    _worker("image-space-after-colon", "image", "ghcr.io/acme/app: 1.4.2", "spec.worker.image"),
    _worker("image-trailing-space", "image", "ghcr.io/acme/app:1.4.2 ", "spec.worker.image"),
    _worker("image-capital-repository", "image", "ghcr.io/Acme/App:1", "spec.worker.image"),
    _worker("image-with-scheme", "image", "https://ghcr.io/acme/app:1", "spec.worker.image"),
    _worker("image-two-tags", "image", "app:1:2", "spec.worker.image"),
    _worker("image-short-digest", "image", "app@sha256:abc", "spec.worker.image"),
    _worker(
        "config-map-name-underscore",
        "envFrom",
        [{"configMapRef": {"name": "App_Config"}}],
        f"{_F}.configMapRef.name",
    ),
    _worker(
        "secret-key-ref-name-capitals",
        "env",
        _env_from({"secretKeyRef": {"name": "ApiToken", "key": "token"}}),
        f"{_E}.valueFrom.secretKeyRef.name",
    ),
    _worker(
        "priority-class-underscore",
        "priorityClassName",
        "batch_low",
        "spec.worker.priorityClassName",
    ),
    _worker(
        "image-pull-secret-space",
        "imagePullSecrets",
        [{"name": "ghcr token"}],
        "spec.worker.imagePullSecrets[0].name",
    ),
    _worker(
        "image-pull-secret-string", "imagePullSecrets", ["ghcr"], "spec.worker.imagePullSecrets[0]"
    ),
    _worker(
        "image-pull-secret-twice",
        "imagePullSecrets",
        [{"name": "ghcr"}, {"name": "ghcr"}],
        "spec.worker.imagePullSecrets[1]: Duplicate value",
    ),
    Invalid(
        "url-secret-name-space",
        ("redis",),
        {"urlSecretRef": {"name": "redis creds", "key": "url"}},
        "spec.redis.urlSecretRef.name",
    ),
    Invalid(
        "jobqueue-name-capitals",
        ("queueName",),
        "arq:queue",
        "metadata.name: Invalid value",
        name="Emails",
        server_only=METADATA_ONLY,
    ),
]


@dataclass(frozen=True)
class Valid:
    id: str
    path: tuple[str, ...]
    value: Any

    def spec(self) -> dict[str, Any]:
        return with_value(self.path, self.value)


def _ok(id: str, field: str, value: Any) -> Valid:
    return Valid(id, ("worker", field), value)


VALID: list[Valid] = [
    Valid("url-bare-host", ("redis", "url"), "redis://redis"),
    Valid("url-ipv6", ("redis", "url"), "redis://[fd00::1]:6379/15"),
    Valid(
        "url-user-and-options",
        ("redis", "url"),
        "rediss://app@cache.example.com/2?ssl_cert_reqs=none",
    ),
    Valid("url-empty-port", ("redis", "url"), "redis://redis:/0"),
    _ok("labels-prefixed-and-empty", "podLabels", {"example.com/tier": "", "a.b_c-d": "X.y_z-1"}),
    _ok("annotation-any-value", "podAnnotations", {"Example.com/Note": "any text,\nwith lines"}),
    _ok(
        "resources-every-kind",
        "resources",
        {
            "requests": {
                "cpu": "0.5",
                "memory": "1e9",
                "ephemeral-storage": "1Gi",
                "hugepages-2Mi": "4Mi",
            },
            "limits": {"cpu": 1, "memory": "1024Mi", "hugepages-2Mi": "4Mi", "nvidia.com/gpu": 2},
        },
    ),
    _ok(
        "request-equal-limit-other-unit",
        "resources",
        {"requests": {"cpu": "1000m"}, "limits": {"cpu": 1}},
    ),
    _ok("toleration-of-every-taint", "tolerations", [{"operator": "Exists"}]),
    _ok("toleration-without-operator", "tolerations", [{"key": "k", "value": "v"}]),
    _ok(
        "toleration-seconds",
        "tolerations",
        [
            {
                "key": "node.kubernetes.io/unreachable",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 30,
            }
        ],
    ),
    _ok(
        "affinity-everything",
        "affinity",
        {
            **_required_node(
                {"key": "cores", "operator": "Gt", "values": ["4"]},
                matchFields=[{"key": "metadata.name", "operator": "NotIn", "values": ["node-1"]}],
            ),
            **_anti(
                topologyKey="kubernetes.io/hostname",
                labelSelector={"matchExpressions": [{"key": "app", "operator": "Exists"}]},
                namespaces=["default"],
                matchLabelKeys=["pod-template-hash"],
                mismatchLabelKeys=["tenant"],
            ),
        },
    ),
    _ok(
        "spread-every-field",
        "topologySpreadConstraints",
        _spread(
            minDomains=2,
            nodeAffinityPolicy="Honor",
            nodeTaintsPolicy="Ignore",
            labelSelector=_SELECTOR,
            matchLabelKeys=["pod-template-hash"],
        )
        + _spread(whenUnsatisfiable="ScheduleAnyway"),
    ),
    _ok(
        "env-every-source",
        "env",
        [
            {"name": "EMPTY", "value": ""},
            {
                "name": "EMPTY_WITH_SOURCE",
                "value": "",
                "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
            },
            {
                "name": "LABEL",
                "valueFrom": {
                    "fieldRef": {
                        "apiVersion": "v1",
                        "fieldPath": "metadata.labels['app.kubernetes.io/name']",
                    }
                },
            },
            {
                "name": "NOTE",
                "valueFrom": {
                    "fieldRef": {"fieldPath": "metadata.annotations['Example.com/Note']"}
                },
            },
            {
                "name": "MEMORY_MB",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
            },
            {
                "name": "CPU_M",
                "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}},
            },
            {
                "name": "LEVEL",
                "valueFrom": {
                    "configMapKeyRef": {"name": "cfg", "key": ".hidden", "optional": True}
                },
            },
        ],
    ),
    _ok(
        "env-from-prefix-relaxed", "envFrom", [{"secretRef": {"name": "s.v1"}, "prefix": "APP-1 "}]
    ),
    _ok("image-registry-port-digest", "image", "localhost:5000/team/app@sha256:" + "a" * 64),
    _ok("image-ipv6-registry", "image", "[fd00::1]:5000/app:v1.2_3"),
]


INVALID: list[Invalid] = [
    Invalid("no-spec", (), DELETE, "spec: Required value", server_only="no spec to model"),
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
        server_only=METADATA_ONLY,
    ),
    *REDIS_URLS,
    *LABELS_AND_ANNOTATIONS,
    *NODE_SELECTORS,
    *RESOURCES,
    *REQUESTS_ABOVE_LIMITS,
    *TOLERATIONS,
    *AFFINITY,
    *TOPOLOGY_SPREAD,
    *ENVIRONMENT,
    *NAMES,
]
