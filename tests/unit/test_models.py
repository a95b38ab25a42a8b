"""The pydantic models accept the examples and reject the invalid table, like the CRD does."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from arqfleet.operator.models import JobQueueSpec
from tests.support.jobqueues import INVALID, VALID, Invalid, Valid, load_example, minimal_spec

SERVER_ONLY = [c for c in INVALID if c.server_only]


@pytest.mark.parametrize("name", ["jobqueue-minimal.yaml", "jobqueue-full.yaml"])
def test_examples_are_valid(name: str) -> None:
    JobQueueSpec.model_validate(load_example(name)["spec"])


def test_defaults_match_the_design() -> None:
    spec = JobQueueSpec.model_validate(minimal_spec())
    assert spec.queue_name == "arq:queue"
    assert (spec.worker.max_jobs, spec.worker.job_timeout_seconds, spec.worker.drain_seconds) == (
        10,
        300,
        330,
    )
    assert (spec.scaling.min_replicas, spec.scaling.max_replicas) == (0, 20)
    assert spec.scaling.jobs_per_replica is None  # resolved to worker.maxJobs by the operator
    assert spec.scaling.scale_up.max_pods == 4
    assert spec.scaling.scale_down.stabilization_seconds == 60  # not HPA's 300: bench/sim
    assert spec.paused is False


@pytest.mark.parametrize("case", [c for c in INVALID if not c.server_only], ids=lambda c: c.id)
def test_models_reject_what_the_api_server_rejects(case: Invalid) -> None:
    with pytest.raises(ValidationError):
        JobQueueSpec.model_validate(case.spec())


def test_server_only_rows_are_few_and_say_why() -> None:
    # Only what the models cannot see (metadata, a missing spec) may be left to the server.
    assert len(SERVER_ONLY) <= 3, [c.id for c in SERVER_ONLY]
    assert all(c.spec() is None or c.name != "bad" for c in SERVER_ONLY)


@pytest.mark.parametrize("case", VALID, ids=lambda c: c.id)
def test_models_accept_unusual_but_valid_values(case: Valid) -> None:
    JobQueueSpec.model_validate(case.spec())


def test_a_refused_redis_url_is_not_quoted() -> None:
    spec = minimal_spec()
    spec["redis"]["url"] = "redis://:hunter2@redis:99999/0"
    with pytest.raises(ValidationError) as raised:
        JobQueueSpec.model_validate(spec)
    errors = raised.value.errors(include_input=False, include_url=False, include_context=False)
    assert "hunter2" not in str(errors)
