"""Probe answers as functions of state and time; dead-letter entry format and caps."""

from __future__ import annotations

import pytest

from arqfleet.worker.dead_letters import DeadLetter, args_repr, describe_error
from arqfleet.worker.health import Health


@pytest.mark.parametrize(
    ("draining", "reachable", "age", "healthy", "ready"),
    [
        (False, True, 1.0, True, True),
        (True, True, 1.0, True, False),
        (False, False, 1.0, True, False),
        (False, True, 31.0, False, False),
        (False, False, 31.0, False, False),
    ],
    ids=["serving", "draining", "redis-just-failed", "redis-stale", "redis-down-long"],
)
def test_probe_answers(
    draining: bool, reachable: bool, age: float, healthy: bool, ready: bool
) -> None:
    health = Health(redis_stale_seconds=30, redis_last_ok=100.0, redis_reachable=reachable)
    health.draining = draining
    assert health.healthy(100.0 + age)[0] is healthy
    assert health.ready(100.0 + age)[0] is ready


def test_args_repr_is_capped_whatever_the_arguments() -> None:
    text = args_repr(("x" * 10_000_000, list(range(100_000))), {"blob": b"y" * 1_000_000}, 200)
    assert len(text) <= 200
    assert text.startswith("'xxx")


def test_describe_error_looks_through_retry() -> None:
    outer = RuntimeError("wrapper")  # as `raise Retry(...) from ValueError(...)` leaves it
    outer.__cause__ = ValueError("root cause")
    assert describe_error(outer) == ("ValueError", "root cause")
    assert describe_error(KeyError()) == ("KeyError", "KeyError()")


def test_dead_letter_json_round_trip() -> None:
    letter = DeadLetter(
        job_id="j1",
        function="f",
        queue="arq:queue",
        enqueued_at_ms=1,
        failed_at_ms=2,
        tries=3,
        error_type="ValueError",
        error="bad",
        args_repr="1, 2",
        requeueable=True,
        pod="p",
    )
    assert DeadLetter.from_json(letter.to_json()) == letter


@pytest.mark.parametrize(
    ("result", "error_type", "fragment"),
    [
        ("unable to serialize result", "unknown", "could not be serialized"),
        ("max 5 retries exceeded", "unknown", "max 5 retries exceeded"),
        ({"r": 1}, "unknown", "{'r': 1}"),
        (None, "unknown", "None"),
    ],
    ids=["arq-placeholder-of-an-unserializable-failure", "plain-text", "other-object", "none"],
)
def test_describe_error_of_a_failure_that_is_not_an_exception(
    result: object, error_type: str, fragment: str
) -> None:
    # A job serializer that cannot encode exceptions (msgpack, JSON) leaves arq a placeholder.
    described_type, message = describe_error(result)
    assert described_type == error_type
    assert fragment in message
