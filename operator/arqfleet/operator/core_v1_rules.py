"""What core/v1 checks in Go and its OpenAPI schema does not say, for the JobQueue's embedded
core/v1 types: enums, bounds and patterns (OVERLAYS) and CEL rules with their Python twins
(RULES), keyed by where they apply in the upstream schema:

    "Toleration"               the definition          "Toleration.key"       a property
    "LabelSelector.matchLabels{}"  a map's values      "PodAffinityTerm.namespaces[]"  items

Sources: k8s.io/kubernetes v1.36.3 pkg/apis/core/validation (ValidateTolerations,
ValidateNodeSelectorRequirement, validatePodAffinityTerm, validateTopologySpreadConstraints,
validateResourceRequirements, ValidateEnv, ValidateEnvFrom...) and apimachinery's
ValidateLabelSelector, ValidateLabels and ValidateAnnotations. Where a rule here is stricter
than Go, its comment says why.

Every list and map gets a maxItems/maxProperties and every string a CEL rule reads gets a
maxLength: the API server estimates each rule's worst-case cost from them and refuses a CRD
whose rules could exceed its budget. The bounds are far above what a worker pod needs.

Left to the Deployment's own validation (rare, and each would cost more than it saves):
the values of a *required* node affinity must be label values (preferred ones need not, and
both share one type); hugepages must be a multiple of their page size and come with cpu or
memory; a divisor is compared by value (Go refuses "1024" for 1Ki); annotation size is
counted in characters (Go counts bytes); a key both in matchLabelKeys and in labelSelector.

Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from arqfleet.operator import k8s_syntax as syn


@dataclass(frozen=True)
class Rule:
    """One x-kubernetes-validations entry (`self` is the node) and the same judgement in
    Python (`check(node) -> True when valid`), so the models refuse what the server does."""

    rule: str
    message: str
    check: Callable[[Any], bool]
    field_path: str | None = None

    def entry(self) -> dict[str, str]:
        entry = {"rule": self.rule, "message": self.message}
        if self.field_path is not None:
            entry["fieldPath"] = self.field_path
        return entry


def _bounded(maximum: int, **more: Any) -> dict[str, Any]:
    return {"maxLength": maximum, **more}


LABEL_KEY = _bounded(syn.MAX_LABEL_KEY)
LABEL_VALUE = _bounded(syn.MAX_LABEL_VALUE, pattern=syn.anchored(syn.LABEL_VALUE))
OBJECT_NAME = _bounded(syn.MAX_NAME, pattern=syn.anchored(syn.DNS_SUBDOMAIN))
WEIGHT = {"minimum": 1, "maximum": 100}

OVERLAYS: dict[str, dict[str, Any]] = {
    "Quantity": {"maxLength": 64},
    # Node selector and pod labels: label keys (rule below) and label values.
    "PodSpec.nodeSelector": {"maxProperties": 64},
    "PodSpec.nodeSelector{}": LABEL_VALUE,
    "ObjectMeta.labels{}": LABEL_VALUE,
    # Resources: at most a handful of names per container.
    "ResourceRequirements.limits": {"maxProperties": 16},
    "ResourceRequirements.requests": {"maxProperties": 16},
    # Tolerations. The Lt/Gt operators need the alpha TaintTolerationComparisonOperators gate,
    # off by default in 1.36; "" (the same as Equal) is refused: nobody means to write it.
    "Toleration.key": LABEL_KEY,
    "Toleration.operator": {"enum": ["Equal", "Exists"]},
    "Toleration.value": LABEL_VALUE,
    "Toleration.effect": {"enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"]},
    # Affinity.
    "NodeAffinity.preferredDuringSchedulingIgnoredDuringExecution": {"maxItems": 32},
    "NodeSelector.nodeSelectorTerms": {"minItems": 1, "maxItems": 16},
    "NodeSelectorTerm.matchExpressions": {"maxItems": 32},
    "NodeSelectorTerm.matchFields": {"maxItems": 8},
    "NodeSelectorRequirement.key": LABEL_KEY,
    "NodeSelectorRequirement.operator": {
        "enum": ["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    },
    "NodeSelectorRequirement.values": {"maxItems": 64},
    "PreferredSchedulingTerm.weight": WEIGHT,
    "WeightedPodAffinityTerm.weight": WEIGHT,
    "PodAffinity.requiredDuringSchedulingIgnoredDuringExecution": {"maxItems": 16},
    "PodAffinity.preferredDuringSchedulingIgnoredDuringExecution": {"maxItems": 16},
    "PodAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution": {"maxItems": 16},
    "PodAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution": {"maxItems": 16},
    "PodAffinityTerm.topologyKey": LABEL_KEY,
    "PodAffinityTerm.namespaces": {"maxItems": 64},
    "PodAffinityTerm.namespaces[]": _bounded(63, pattern=syn.anchored(syn.DNS_LABEL)),
    "PodAffinityTerm.matchLabelKeys": {"maxItems": 16},
    "PodAffinityTerm.matchLabelKeys[]": LABEL_KEY,
    "PodAffinityTerm.mismatchLabelKeys": {"maxItems": 16},
    "PodAffinityTerm.mismatchLabelKeys[]": LABEL_KEY,
    "LabelSelector.matchLabels": {"maxProperties": 64},
    "LabelSelector.matchLabels{}": LABEL_VALUE,
    "LabelSelector.matchExpressions": {"maxItems": 32},
    "LabelSelectorRequirement.key": LABEL_KEY,
    "LabelSelectorRequirement.operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
    "LabelSelectorRequirement.values": {"maxItems": 64},
    "LabelSelectorRequirement.values[]": LABEL_VALUE,
    # Topology spread.
    "TopologySpreadConstraint.maxSkew": {"minimum": 1},
    "TopologySpreadConstraint.minDomains": {"minimum": 1},
    "TopologySpreadConstraint.topologyKey": LABEL_KEY,
    "TopologySpreadConstraint.whenUnsatisfiable": {"enum": ["DoNotSchedule", "ScheduleAnyway"]},
    "TopologySpreadConstraint.nodeAffinityPolicy": {"enum": ["Honor", "Ignore"]},
    "TopologySpreadConstraint.nodeTaintsPolicy": {"enum": ["Honor", "Ignore"]},
    "TopologySpreadConstraint.matchLabelKeys": {"maxItems": 16},
    "TopologySpreadConstraint.matchLabelKeys[]": LABEL_KEY,
    # Environment. Env var names keep arqfleet's portable rule (a shell can export them), which
    # is stricter than Kubernetes' relaxed one (any printable ASCII but "=").
    "EnvVar.name": _bounded(256, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"),
    "ObjectFieldSelector.apiVersion": {"enum": ["v1"]},
    "ObjectFieldSelector.fieldPath": {"maxLength": 400},
    "ResourceFieldSelector.resource": {"maxLength": 64},
    "ResourceFieldSelector.containerName": {"maxLength": 63},
    # Go requires a name for every reference (upstream only defaults it to "").
    "ConfigMapKeySelector": {"required": ["name"]},
    "ConfigMapKeySelector.name": OBJECT_NAME,
    "ConfigMapKeySelector.key": _bounded(253, pattern=syn.anchored(syn.CONFIG_KEY)),
    "SecretKeySelector": {"required": ["name"]},
    "SecretKeySelector.name": OBJECT_NAME,
    "SecretKeySelector.key": _bounded(253, pattern=syn.anchored(syn.CONFIG_KEY)),
    "ConfigMapEnvSource": {"required": ["name"]},
    "ConfigMapEnvSource.name": OBJECT_NAME,
    "SecretEnvSource": {"required": ["name"]},
    "SecretEnvSource.name": OBJECT_NAME,
    "EnvFromSource.prefix": _bounded(256, pattern=syn.anchored(syn.RELAXED_ENV_NAME)),
}


# -- helpers shared by the rules --------------------------------------------------------------


def _filled(node: dict[str, Any], key: str) -> bool:
    """CEL `has(self.key) && size(self.key) > 0`."""
    return bool(node.get(key))


def _keys(message: str, cel_check: Callable[[str], str], check: Callable[[str], bool]) -> Rule:
    """Every key of a map passes `check`."""
    return Rule(f"self.all(k, {cel_check('k')})", message, lambda m: all(map(check, m)))


def _each(
    field: str, message: str, cel_check: Callable[[str], str], check: Callable[[str], bool]
) -> Rule:
    """Every string of an optional list field passes `check`."""
    return Rule(
        f"!has(self.{field}) || self.{field}.all(k, {cel_check('k')})",
        message,
        lambda n: all(map(check, n.get(field) or ())),
        f".{field}",
    )


def _label_key(field: str) -> Rule:
    return Rule(
        syn.cel_label_key(f"self.{field}"),
        f"{field} must be a label key: {syn.KEY_FORMAT}",
        lambda n: syn.is_label_key(n[field]),
        f".{field}",
    )


def _values_by_operator(gt_lt: bool) -> list[Rule]:
    """NodeSelectorRequirement / LabelSelectorRequirement: values against the operator."""
    rules = [
        Rule(
            "!(self.operator in ['In', 'NotIn']) || (has(self.values) && size(self.values) > 0)",
            "values must not be empty when operator is In or NotIn",
            lambda n: n["operator"] not in ("In", "NotIn") or _filled(n, "values"),
            ".values",
        ),
        Rule(
            "!(self.operator in ['Exists', 'DoesNotExist']) || !has(self.values) || "
            "size(self.values) == 0",
            "values must be empty when operator is Exists or DoesNotExist",
            lambda n: n["operator"] not in ("Exists", "DoesNotExist") or not _filled(n, "values"),
            ".values",
        ),
    ]
    if gt_lt:
        rules.append(
            Rule(
                "!(self.operator in ['Gt', 'Lt']) || (has(self.values) && size(self.values) == 1)",
                "values must hold exactly one number when operator is Gt or Lt",
                lambda n: n["operator"] not in ("Gt", "Lt") or len(n.get("values") or ()) == 1,
                ".values",
            )
        )
    return rules


def _label_keys_need_selector(*fields: str) -> Rule:
    """matchLabelKeys / mismatchLabelKeys merge the pod's own labels into labelSelector."""
    unset = " && ".join(f"(!has(self.{f}) || size(self.{f}) == 0)" for f in fields)
    return Rule(
        f"({unset}) || has(self.labelSelector)",
        f"{' and '.join(fields)} need a labelSelector",
        lambda n: not any(_filled(n, f) for f in fields) or "labelSelector" in n,
        f".{fields[0]}",
    )


# -- resources --------------------------------------------------------------------------------

STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage")


def _cel_q(expr: str) -> str:
    """CEL: a Quantity from an int-or-string value (string() accepts both)."""
    return f"quantity(string({expr}))"


def _cel_is_q(expr: str) -> str:
    return f"isQuantity(string({expr}))"


def _cel_resource_name(k: str) -> str:
    return (
        f"({k} in {list(STANDARD_RESOURCES)} || ({k}.startsWith('hugepages-') && "
        f"{syn.cel_label_key(k)}) || ({k}.contains('/') && {syn.cel_label_key(k)} && "
        f"({k}.contains('kubernetes.io/') || !{k}.startsWith('requests.'))))"
    )


def is_resource_name(name: str) -> bool:
    """validateContainerResourceName: a standard name, hugepages-<size>, or domain/name."""
    if name in STANDARD_RESOURCES:
        return True
    if name.startswith("hugepages-"):
        return syn.is_label_key(name)
    return (
        "/" in name
        and syn.is_label_key(name)
        and ("kubernetes.io/" in name or not name.startswith("requests."))
    )


def _cel_no_overcommit(k: str) -> str:
    """Extended resources (domain/name outside kubernetes.io) and hugepages cannot be
    overcommitted (helper.IsOvercommitAllowed)."""
    return (
        f"({k}.startsWith('hugepages-') || ({k}.contains('/') && !{k}.contains('kubernetes.io/')))"
    )


def no_overcommit(name: str) -> bool:
    return name.startswith("hugepages-") or ("/" in name and "kubernetes.io/" not in name)


def _quantities_ok(node: dict[str, Any]) -> bool:
    values = [syn.parse_quantity(v) for v in node.values()]
    return all(v is not None and v >= 0 for v in values)


def _extended_integers(node: dict[str, Any]) -> bool:
    for name, value in node.items():
        parsed = syn.parse_quantity(value)
        extended = "/" in name and "kubernetes.io/" not in name
        if extended and parsed is not None and not syn.is_integer_quantity(parsed):
            return False
    return True


def _resource_map_rules() -> list[Rule]:
    return [
        _keys(
            "resource names are cpu, memory, ephemeral-storage, hugepages-<size> or an "
            "extended resource such as example.com/gpu",
            _cel_resource_name,
            is_resource_name,
        ),
        Rule(
            f"self.all(k, {_cel_is_q('self[k]')} && "
            f"{_cel_q('self[k]')}.compareTo(quantity('0')) >= 0)",
            "quantities must be non-negative numbers with an optional suffix, such as 500m, "
            "1.5, 256Mi or 2Gi",
            _quantities_ok,
        ),
        Rule(
            "self.all(k, !(k.contains('/') && !k.contains('kubernetes.io/')) || "
            f"!{_cel_is_q('self[k]')} || {_cel_q('self[k]')}.isInteger())",
            "extended resources (such as example.com/gpu) are counted in whole units",
            _extended_integers,
        ),
    ]


def _pairs(node: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(name, request, limit) for every resource with both, as parsed quantities."""
    requests, limits = node.get("requests") or {}, node.get("limits") or {}
    return [
        (k, syn.parse_quantity(v), syn.parse_quantity(limits[k]))
        for k, v in requests.items()
        if k in limits
    ]


def _requests_within_limits(node: dict[str, Any]) -> bool:
    return all(r is None or lim is None or r <= lim for _, r, lim in _pairs(node))


def _not_overcommitted(node: dict[str, Any]) -> bool:
    limits = node.get("limits") or {}
    if any(no_overcommit(k) and k not in limits for k in node.get("requests") or {}):
        return False
    return all(
        r is None or lim is None or r == lim for k, r, lim in _pairs(node) if no_overcommit(k)
    )


_REQUEST, _LIMIT = "self.requests[k]", "self.limits[k]"
_EITHER_UNPARSED = f"(!{_cel_is_q(_REQUEST)} || !{_cel_is_q(_LIMIT)})"

RESOURCE_RULES = [
    Rule(
        "!has(self.requests) || !has(self.limits) || self.requests.all(k, !(k in self.limits) "
        f"|| {_EITHER_UNPARSED} || {_cel_q(_REQUEST)}.compareTo({_cel_q(_LIMIT)}) <= 0)",
        "requests must not exceed limits: a container is stopped at its limit, so no more can "
        "be reserved for it",
        _requests_within_limits,
        ".requests",
    ),
    Rule(
        f"!has(self.requests) || self.requests.all(k, !{_cel_no_overcommit('k')} || "
        f"(has(self.limits) && k in self.limits && ({_EITHER_UNPARSED} || "
        f"{_cel_q(_REQUEST)}.compareTo({_cel_q(_LIMIT)}) == 0)))",
        "hugepages and extended resources cannot be overcommitted: set the limit, equal to "
        "the request",
        _not_overcommitted,
        ".requests",
    ),
]

# -- environment ------------------------------------------------------------------------------

FIELD_PATHS = (
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
)
# metadata.labels['<key>'] and metadata.annotations['<key>'] (\x27 is the quote).
SUBSCRIPTED_FIELD_PATH = (
    rf"metadata\.labels\[\x27{syn.LABEL_KEY}\x27\]|"
    rf"metadata\.annotations\[\x27{syn.ANNOTATION_KEY}\x27\]"
)
_SUBSCRIPTED = re.compile(SUBSCRIPTED_FIELD_PATH)
RESOURCE_FIELDS = tuple(
    f"{kind}.{name}" for kind in ("limits", "requests") for name in STANDARD_RESOURCES
)
CPU_DIVISORS = ("1m", "1")
BYTE_DIVISORS = ("1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei")
ENV_SOURCES = ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef")


def _divisor_ok(node: dict[str, Any]) -> bool:
    """validateContainerResourceDivisor, comparing values (Go compares canonical strings)."""
    divisor = syn.parse_quantity(node.get("divisor", 0))
    if divisor is None or divisor == 0:
        return True
    allowed = CPU_DIVISORS if node["resource"].endswith(".cpu") else BYTE_DIVISORS
    return any(syn.parse_quantity(a) == divisor for a in allowed)


def _cel_divisor() -> str:
    d = _cel_q("self.divisor")
    cpu = ", ".join(f"quantity('{a}')" for a in CPU_DIVISORS)
    memory = ", ".join(f"quantity('{a}')" for a in BYTE_DIVISORS)
    return (
        f"!has(self.divisor) || !{_cel_is_q('self.divisor')} || "
        f"{d}.compareTo(quantity('0')) == 0 || (self.resource.endsWith('.cpu') ? [{cpu}] : "
        f"[{memory}]).exists(q, q.compareTo({d}) == 0)"
    )


def _exactly_one(fields: tuple[str, ...], message: str) -> Rule:
    count = " + ".join(f"(has(self.{f}) ? 1 : 0)" for f in fields)
    return Rule(f"{count} == 1", message, lambda n: sum(f in n for f in fields) == 1)


# -- all rules, by where they apply -----------------------------------------------------------

ANNOTATIONS_TOTAL = 256 * 1024  # TotalAnnotationSizeLimitB: keys and values together

LABEL_KEYS_MESSAGE = f"keys must be label keys: {syn.KEY_FORMAT}"
_LABEL_KEYS = _keys(LABEL_KEYS_MESSAGE, syn.cel_label_key, syn.is_label_key)

RULES: dict[str, list[Rule]] = {
    "PodSpec.nodeSelector": [_LABEL_KEYS],
    "ObjectMeta.labels": [_LABEL_KEYS],
    "ObjectMeta.annotations": [
        _keys(
            f"keys must be annotation keys: {syn.KEY_FORMAT} (the prefix may hold capitals)",
            syn.cel_annotation_key,
            syn.is_annotation_key,
        ),
        Rule(
            f"self.map(k, size(k) + size(self[k])).sum() <= {ANNOTATIONS_TOTAL}",
            "annotations may hold at most 256 KiB in all, keys and values together",
            lambda m: sum(len(k) + len(v) for k, v in m.items()) <= ANNOTATIONS_TOTAL,
        ),
    ],
    "ResourceRequirements": RESOURCE_RULES,
    "ResourceRequirements.limits": _resource_map_rules(),
    "ResourceRequirements.requests": _resource_map_rules(),
    "Toleration": [
        Rule(
            f"!has(self.key) || self.key == '' || {syn.cel_label_key('self.key')}",
            f"key must be a label key: {syn.KEY_FORMAT}",
            lambda n: not n.get("key") or syn.is_label_key(n["key"]),
            ".key",
        ),
        Rule(
            "(has(self.key) && self.key != '') || (has(self.operator) && "
            "self.operator == 'Exists')",
            "operator must be Exists when key is empty (a toleration of every taint)",
            lambda n: bool(n.get("key")) or n.get("operator") == "Exists",
            ".operator",
        ),
        Rule(
            "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || "
            "self.value == ''",
            "value must be empty when operator is Exists",
            lambda n: n.get("operator") != "Exists" or not n.get("value"),
            ".value",
        ),
        Rule(
            "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
            "effect must be NoExecute when tolerationSeconds is set",
            lambda n: "tolerationSeconds" not in n or n.get("effect") == "NoExecute",
            ".effect",
        ),
    ],
    "NodeSelectorTerm": [
        Rule(
            "!has(self.matchFields) || self.matchFields.all(f, f.key == 'metadata.name' && "
            "f.operator in ['In', 'NotIn'] && has(f.values) && size(f.values) == 1)",
            "matchFields supports only key metadata.name, operator In or NotIn and exactly "
            "one value (a node name)",
            lambda n: all(
                f["key"] == "metadata.name"
                and f["operator"] in ("In", "NotIn")
                and len(f.get("values") or ()) == 1
                for f in n.get("matchFields") or ()
            ),
            ".matchFields",
        )
    ],
    "NodeSelectorRequirement": [
        _label_key("key"),
        *_values_by_operator(gt_lt=True),
    ],
    "LabelSelector.matchLabels": [_LABEL_KEYS],
    "LabelSelectorRequirement": [
        _label_key("key"),
        *_values_by_operator(gt_lt=False),
    ],
    "PodAffinityTerm": [
        _label_key("topologyKey"),
        _each("matchLabelKeys", LABEL_KEYS_MESSAGE, syn.cel_label_key, syn.is_label_key),
        _each("mismatchLabelKeys", LABEL_KEYS_MESSAGE, syn.cel_label_key, syn.is_label_key),
        _label_keys_need_selector("matchLabelKeys", "mismatchLabelKeys"),
        Rule(
            "!has(self.matchLabelKeys) || !has(self.mismatchLabelKeys) || "
            "!self.matchLabelKeys.exists(k, k in self.mismatchLabelKeys)",
            "a key cannot be in both matchLabelKeys and mismatchLabelKeys",
            lambda n: (
                not set(n.get("matchLabelKeys") or ()) & set(n.get("mismatchLabelKeys") or ())
            ),
            ".matchLabelKeys",
        ),
    ],
    "TopologySpreadConstraint": [
        # Go only refuses an empty topologyKey; but a key that is no label key can match no
        # node label, so DoNotSchedule would leave every worker pod Pending.
        _label_key("topologyKey"),
        Rule(
            "!has(self.minDomains) || self.whenUnsatisfiable == 'DoNotSchedule'",
            "minDomains needs whenUnsatisfiable: DoNotSchedule",
            lambda n: "minDomains" not in n or n["whenUnsatisfiable"] == "DoNotSchedule",
            ".minDomains",
        ),
        _each("matchLabelKeys", LABEL_KEYS_MESSAGE, syn.cel_label_key, syn.is_label_key),
        _label_keys_need_selector("matchLabelKeys"),
    ],
    "EnvVar": [
        Rule(
            "!has(self.valueFrom) || !has(self.value) || size(self.value) == 0",
            "set value or valueFrom, not both",
            lambda n: "valueFrom" not in n or not n.get("value"),
            ".valueFrom",
        )
    ],
    "EnvVarSource": [
        _exactly_one(
            ENV_SOURCES,
            "valueFrom needs exactly one of fieldRef, resourceFieldRef, configMapKeyRef or "
            "secretKeyRef",
        )
    ],
    "ObjectFieldSelector": [
        Rule(
            f"self.fieldPath in {list(FIELD_PATHS)} || "
            f"self.fieldPath.matches(r'^({SUBSCRIPTED_FIELD_PATH})$')",
            f"fieldPath must be one of {', '.join(FIELD_PATHS)}, metadata.labels['<key>'] or "
            "metadata.annotations['<key>']",
            lambda n: (
                n["fieldPath"] in FIELD_PATHS or _SUBSCRIPTED.fullmatch(n["fieldPath"]) is not None
            ),
            ".fieldPath",
        )
    ],
    "ResourceFieldSelector": [
        Rule(
            f"self.resource in {list(RESOURCE_FIELDS)} || "
            "self.resource.startsWith('limits.hugepages-') || "
            "self.resource.startsWith('requests.hugepages-')",
            f"resource must be one of {', '.join(RESOURCE_FIELDS)}, limits.hugepages-<size> or "
            "requests.hugepages-<size>",
            lambda n: (
                n["resource"] in RESOURCE_FIELDS
                or n["resource"].startswith(("limits.hugepages-", "requests.hugepages-"))
            ),
            ".resource",
        ),
        Rule(
            _cel_divisor(),
            "divisor must be 1m or 1 for cpu, and 1 or a power of 1000 or 1024 (1k...1E, "
            "1Ki...1Ei) for memory, ephemeral-storage and hugepages",
            _divisor_ok,
            ".divisor",
        ),
    ],
    "EnvFromSource": [
        _exactly_one(("configMapRef", "secretRef"), "set exactly one of configMapRef or secretRef")
    ],
}
