"""The pydantic models accept the examples and reject the invalid table, like the CRD does."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from arqfleet.operator.models import JobQueueSpec
from tests.support.jobqueues import INVALID, Invalid, load_example, minimal_spec


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
    assert spec.scaling.scale_down.stabilization_seconds == 300
    assert spec.paused is False


@pytest.mark.parametrize(
    "case", [c for c in INVALID if c.spec() is not None and c.name == "bad"], ids=lambda c: c.id
)
def test_models_reject_what_the_api_server_rejects(case: Invalid) -> None:
    with pytest.raises(ValidationError):
        JobQueueSpec.model_validate(case.spec())
