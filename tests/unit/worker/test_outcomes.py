"""How a try's exception becomes an outcome and a dead-letter decision (mirrors arq 0.28)."""

from __future__ import annotations

import asyncio

import pytest
from arq.worker import Retry

from arqfleet.worker.instrument import classify

CASES = [
    # exc, retry_jobs, aborting, stopping, job_try, max_tries, outcome, dead
    (Retry(1), True, False, False, 1, 3, "retry", False),
    (Retry(1), True, False, False, 3, 3, "retry", True),
    (Retry(1), False, False, False, 1, 3, "failure", True),
    (ValueError("x"), True, False, False, 1, 5, "failure", True),
    (asyncio.CancelledError(), True, True, False, 1, 5, "cancelled", False),
    (asyncio.CancelledError(), True, False, True, 1, 5, "cancelled", False),
    (asyncio.CancelledError(), False, False, True, 1, 5, "cancelled", True),
    (asyncio.CancelledError(), True, False, False, 1, 5, "timeout", True),
]
IDS = [
    "retry-before-last-try-lives",
    "retry-on-last-try-is-dead",
    "retry-disabled-is-a-failure",
    "plain-exception-is-not-retried",
    "abort-is-not-a-dead-letter",
    "drain-cut-is-re-queued",
    "drain-cut-without-retries-is-lost-so-dead",
    "cancel-by-arq-wait-for-is-timeout",
]


@pytest.mark.parametrize(
    ("exc", "retry_jobs", "aborting", "stopping", "job_try", "max_tries", "outcome", "dead"),
    CASES,
    ids=IDS,
)
def test_classify(
    exc: BaseException,
    retry_jobs: bool,
    aborting: bool,
    stopping: bool,
    job_try: int,
    max_tries: int,
    outcome: str,
    dead: bool,
) -> None:
    assert classify(
        exc,
        retry_jobs=retry_jobs,
        aborting=aborting,
        stopping=stopping,
        job_try=job_try,
        max_tries=max_tries,
    ) == (outcome, dead)
