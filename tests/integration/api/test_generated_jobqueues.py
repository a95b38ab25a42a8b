"""Generated JobQueues, valid and not, sent to the real API server, with the real operator
watching: every invalid one is refused naming its field (and the models refuse it too), every
accepted one is reconciled without crashing or wedging the operator."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from pydantic import ValidationError

from arqfleet.operator.models import JobQueueSpec
from localcluster import ControlPlane
from tests.support.jobqueues import jobqueue
from tests.support.kube import kubectl
from tests.support.operator_process import OperatorProcess, bind_operator_rbac
from tests.support.waiting import wait_for

pytestmark = pytest.mark.cluster

names = (f"gen-{i}" for i in itertools.count())

settings_paths = hs.from_regex(
    r"[a-z][a-z0-9_]{0,8}(\.[a-z][a-z0-9_]{0,8}){0,2}\.[A-Z][A-Za-z]{0,12}", fullmatch=True
)


@hs.composite
def valid_specs(draw: Callable[..., Any]) -> dict[str, Any]:
    timeout = draw(hs.integers(1, 3600))
    low = draw(hs.integers(0, 20))
    spec: dict[str, Any] = {
        "redis": draw(
            hs.sampled_from(
                [
                    {"url": "redis://redis.default.svc:6379/0"},
                    {"url": "rediss://cache.example.com:6380/3"},
                    {"urlSecretRef": {"name": "redis-credentials", "key": "url"}},
                ]
            )
        ),
        "queueName": draw(hs.sampled_from(["arq:queue", "arq:emails", "reports"])),
        "worker": {
            "image": draw(hs.sampled_from(["app:1", "ghcr.io/acme/app:1.4.2"])),
            "settings": draw(settings_paths),
            "maxJobs": draw(hs.integers(1, 1000)),
            "jobTimeoutSeconds": timeout,
            "drainSeconds": timeout + draw(hs.integers(0, 600)),
        },
        "scaling": {
            "minReplicas": low,
            "maxReplicas": low + draw(hs.integers(max(0, 1 - low), 50)),
            "pollSeconds": draw(hs.integers(1, 300)),
            "activationJobs": draw(hs.integers(1, 100)),
            "scaleDown": {"stabilizationSeconds": draw(hs.integers(0, 3600))},
        },
        "paused": draw(hs.booleans()),
    }
    if draw(hs.booleans()):
        spec["scaling"]["maxWaitSeconds"] = draw(hs.integers(1, 86400))
    if draw(hs.booleans()):
        spec["worker"]["env"] = [{"name": "LOG_LEVEL", "value": draw(hs.text(max_size=20))}]
    return spec


# (path inside spec, a strategy of wrong values, a fragment the API server's message must hold)
MUTATIONS: list[tuple[tuple[str, ...], hs.SearchStrategy[Any], str]] = [
    (
        ("worker", "maxJobs"),
        hs.one_of(hs.integers(max_value=0), hs.integers(min_value=1001)),
        "spec.worker.maxJobs",
    ),
    (("worker", "maxJobs"), hs.text(min_size=1, max_size=5), "spec.worker.maxJobs"),
    (
        ("scaling", "maxReplicas"),
        hs.one_of(hs.integers(max_value=0), hs.integers(min_value=1001)),
        "spec.scaling.maxReplicas",
    ),
    (("scaling", "pollSeconds"), hs.integers(max_value=0), "spec.scaling.pollSeconds"),
    (
        ("redis", "url"),
        hs.from_regex(r"(http|ftp|tcp)://[a-z]{1,8}:[0-9]{2,4}", fullmatch=True),
        "spec.redis.url",
    ),
    (
        ("redis", "url"),
        hs.from_regex(r"redis://:[a-z]{4,10}@[a-z]{1,8}:6379/0", fullmatch=True),
        "spec.redis.url",
    ),
    (
        ("worker", "settings"),
        hs.from_regex(r"[a-z]{1,8} [a-z]{1,8}", fullmatch=True),
        "spec.worker.settings",
    ),
    (("worker", "env"), hs.just([{"name": "ARQFLEET_MAX_JOBS", "value": "3"}]), "spec.worker.env"),
    (
        ("worker", "securityContext"),
        hs.just({"privileged": True}),
        "spec.worker.securityContext.privileged",
    ),
    (("worker", "unknownField"), hs.integers(), "unknownField"),
    # The embedded core/v1 types and the parsed Redis URL.
    (
        ("worker", "podLabels"),
        hs.from_regex(r"[a-z]{1,8} [a-z]{1,8}", fullmatch=True).map(lambda v: {"team": v}),
        "spec.worker.podLabels.team",
    ),
    (
        ("worker", "resources"),
        hs.from_regex(r"[1-9][0-9]{0,2}(GB|MB|gb|mi|Gib|cores| m)", fullmatch=True).map(
            lambda q: {"requests": {"memory": q}}
        ),
        "spec.worker.resources.requests.memory",
    ),
    (
        ("worker", "resources"),
        hs.integers(2, 64).map(lambda n: {"requests": {"cpu": n}, "limits": {"cpu": f"{n - 1}"}}),
        "spec.worker.resources.requests",
    ),
    (
        ("worker", "tolerations"),
        hs.sampled_from(["exists", "equal", "In", "Lt", ""]).map(
            lambda op: [{"key": "k", "operator": op}]
        ),
        "spec.worker.tolerations[0].operator",
    ),
    (
        ("redis", "url"),
        hs.integers(65536, 99999).map(lambda p: f"redis://r:{p}/0"),
        "spec.redis.url",
    ),
    (
        ("redis", "url"),
        hs.integers(16, 9999).map(lambda db: f"redis://r:6379/{db}"),
        "spec.redis.url",
    ),
]


@hs.composite
def invalid_specs(draw: Callable[..., Any]) -> tuple[dict[str, Any], str]:
    spec = copy.deepcopy(draw(valid_specs()))
    path, values, fragment = draw(hs.sampled_from(MUTATIONS))
    node = spec
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = draw(values)
    if path == ("redis", "url"):
        spec["redis"].pop("urlSecretRef", None)
    return spec, fragment


def apply(plane: ControlPlane, namespace: str, spec: dict[str, Any]) -> tuple[int, str, str]:
    name = next(names)
    body = {**jobqueue(name, spec), "metadata": {"name": name, "namespace": namespace}}
    done = kubectl(
        plane, "create", "--validate=strict", "-f", "-", stdin=json.dumps(body), check=False
    )
    return done.returncode, done.stdout + done.stderr, name


@pytest.fixture
def watched(kube_crds: ControlPlane, namespace: str) -> Iterator[OperatorProcess]:
    kubeconfig = bind_operator_rbac(kube_crds, [namespace], user="arqfleet-op-generated")
    process = OperatorProcess(kube_crds, kubeconfig, namespaces=[namespace])
    process.start()
    yield process
    assert process.stop() == 0, process.log()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=invalid_specs())
def test_invalid_jobqueues_are_refused_naming_the_field(
    kube_crds: ControlPlane, namespace: str, case: tuple[dict[str, Any], str]
) -> None:
    spec, fragment = case
    code, output, _ = apply(kube_crds, namespace, spec)
    assert code != 0, f"accepted: {spec}"
    assert fragment in output, output
    # The models, the CRD's source, refuse the same object.
    with pytest.raises(ValidationError):
        JobQueueSpec.model_validate(spec)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(spec=valid_specs())
def test_valid_jobqueues_are_accepted_and_reconciled(
    kube_crds: ControlPlane, namespace: str, watched: OperatorProcess, spec: dict[str, Any]
) -> None:
    code, output, name = apply(kube_crds, namespace, spec)
    assert code == 0, output
    JobQueueSpec.model_validate(spec)

    def reported() -> bool:
        got = kubectl(kube_crds, "-n", namespace, "get", "jq", name, "-o", "json", check=False)
        status = json.loads(got.stdout or "{}").get("status") or {}
        return any(c["type"] == "Ready" for c in status.get("conditions") or ())

    # Reconciled: a Ready condition (whatever it says: the Redis hosts do not exist here).
    wait_for(reported, timeout=30, interval=0.2, what=f"{name} reconciled")
    assert watched.popen is not None
    assert watched.popen.poll() is None, watched.log()
    assert "Traceback" not in watched.log()
