"""workload renders the Deployment every JobQueue gets: the contract with the worker runtime."""

from __future__ import annotations

from typing import Any

import pytest

from arqfleet.operator import constants as c
from arqfleet.operator import workload
from arqfleet.operator.models import JobQueueSpec
from arqfleet.worker.settings import WorkerEnv
from tests.support.jobqueues import load_example, minimal_spec

REF = workload.JobQueueRef("emails", "prod", "uid-1")


def spec(**overrides: Any) -> JobQueueSpec:
    raw = minimal_spec()
    raw.update(overrides)
    return JobQueueSpec.model_validate(raw)


def container(body: dict[str, Any]) -> dict[str, Any]:
    (only,) = body["spec"]["template"]["spec"]["containers"]
    return dict(only)


def test_every_arqfleet_env_var_is_one_the_worker_reads() -> None:
    env = container(workload.deployment(REF, spec()))["env"]
    worker_fields = {f"ARQFLEET_{name.upper()}" for name in WorkerEnv.model_fields}
    ours = {e["name"] for e in env if e["name"].startswith("ARQFLEET_")}
    assert ours <= worker_fields, ours - worker_fields
    assert len(ours) == 7


def test_redis_url_from_secret_never_inline() -> None:
    secret = spec(redis={"urlSecretRef": {"name": "creds", "key": "url"}})
    (url,) = [
        e
        for e in container(workload.deployment(REF, secret))["env"]
        if e["name"] == c.ENV_REDIS_URL
    ]
    assert url == {
        "name": c.ENV_REDIS_URL,
        "valueFrom": {"secretKeyRef": {"name": "creds", "key": "url"}},
    }


@pytest.mark.parametrize(
    ("timeout", "drain", "grace"),
    [(300, 330, 345), (1, 1, 16), (600, 600, 615)],
    ids=["default", "short", "long-jobs"],
)
def test_grace_period_covers_the_drain(timeout: int, drain: int, grace: int) -> None:
    worker = {**minimal_spec()["worker"], "jobTimeoutSeconds": timeout, "drainSeconds": drain}
    body = workload.deployment(REF, spec(worker=worker))
    assert body["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == grace


def test_replicas_only_when_creating() -> None:
    assert "replicas" not in workload.deployment(REF, spec())["spec"]
    assert workload.deployment(REF, spec(), replicas=3)["spec"]["replicas"] == 3


@pytest.mark.parametrize(
    ("scaling", "last", "expected"),
    [
        ({}, None, 0),
        ({"minReplicas": 2}, None, 2),
        ({"minReplicas": 1, "maxReplicas": 5}, 4, 4),
        ({"minReplicas": 1, "maxReplicas": 5}, 9, 5),
        ({"minReplicas": 3, "maxReplicas": 5}, 0, 3),
    ],
    ids=["default-zero", "min", "last-decision", "clamped-to-max", "clamped-to-min"],
)
def test_initial_replicas(scaling: dict[str, int], last: int | None, expected: int) -> None:
    assert workload.initial_replicas(spec(scaling=scaling), last) == expected


def test_restricted_security_context_and_writable_tmp() -> None:
    body = workload.deployment(REF, spec())
    pod = body["spec"]["template"]["spec"]
    ctx = container(body)["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"name": "tmp", "mountPath": "/tmp"} in container(body)["volumeMounts"]
    assert pod["automountServiceAccountToken"] is False


def test_a_failing_worker_reports_its_last_log_lines() -> None:
    # Kubelet's default ("File") leaves the message empty: the worker writes no termination file.
    assert container(workload.deployment(REF, spec()))["terminationMessagePolicy"] == (
        "FallbackToLogsOnError"
    )


def test_user_labels_cannot_break_the_selector() -> None:
    body = workload.deployment(
        REF, spec(worker={**minimal_spec()["worker"], "podLabels": {"a": "b"}})
    )
    labels = body["spec"]["template"]["metadata"]["labels"]
    assert labels["a"] == "b"
    for key, value in body["spec"]["selector"]["matchLabels"].items():
        assert labels[key] == value


def test_full_example_copies_every_pod_knob() -> None:
    full = JobQueueSpec.model_validate(load_example("jobqueue-full.yaml")["spec"])
    body = workload.deployment(REF, full)
    pod = body["spec"]["template"]["spec"]
    for key in (
        "nodeSelector",
        "tolerations",
        "affinity",
        "topologySpreadConstraints",
        "imagePullSecrets",
        "priorityClassName",
        "serviceAccountName",
    ):
        assert pod[key], key
    assert "automountServiceAccountToken" not in pod  # the user named an identity
    assert container(body)["envFrom"] == [{"configMapRef": {"name": "app-config"}}]
    assert container(body)["imagePullPolicy"] == "IfNotPresent"


def test_optional_objects() -> None:
    assert workload.pod_disruption_budget(REF, spec()) is None
    with_budget = spec(
        worker={**minimal_spec()["worker"], "disruptionBudget": {"maxUnavailable": "50%"}}
    )
    pdb = workload.pod_disruption_budget(REF, with_budget)
    assert pdb is not None
    assert pdb["spec"]["maxUnavailable"] == "50%"
    assert workload.pod_monitor(REF, spec(monitoring={"podMonitor": False})) is None
    monitor = workload.pod_monitor(REF, spec())
    assert monitor is not None
    assert monitor["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


def test_security_context_overrides_replace_single_fields() -> None:
    spec = JobQueueSpec.model_validate(
        {
            **minimal_spec(),
            "worker": {
                **minimal_spec()["worker"],
                "securityContext": {"runAsUser": 10001, "readOnlyRootFilesystem": False},
                "podSecurityContext": {"fsGroup": 2000},
            },
        }
    )
    pod = workload.pod_template(REF, spec)["spec"]
    [container] = pod["containers"]
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": False,  # the user's
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
        "runAsUser": 10001,  # the user's
    }
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
        "fsGroup": 2000,
    }


def test_leaving_restricted_takes_an_explicit_level() -> None:
    privileged = {"privileged": True, "allowPrivilegeEscalation": True}
    worker = {**minimal_spec()["worker"], "securityContext": privileged}
    with pytest.raises(ValueError, match="breaks Pod Security 'restricted'"):
        JobQueueSpec.model_validate({**minimal_spec(), "worker": worker})
    spec = JobQueueSpec.model_validate(
        {**minimal_spec(), "worker": {**worker, "podSecurity": "privileged"}}
    )
    [container] = workload.pod_template(REF, spec)["spec"]["containers"]
    assert container["securityContext"]["privileged"] is True
