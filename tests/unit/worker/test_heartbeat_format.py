"""The heartbeat wire format the operator imports: encode, parse, filter live beats."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arqfleet.worker.constants import (
    Heartbeat,
    HeartbeatFormatError,
    encode_heartbeat_body,
    heartbeat_expiry_key,
    heartbeats_key,
    live_heartbeats,
    parse_heartbeat,
    redis_time_ms,
)


def complete(body: str, expires_at_ms: int) -> str:
    """What the writer's Lua script does: close the object with the expiry from Redis TIME."""
    return f'{body},"expires_at_ms":{expires_at_ms}}}'


@given(
    pod=st.text(min_size=1, max_size=63),
    in_flight=st.integers(0, 10_000),
    completed=st.integers(0, 2**53),
    draining=st.booleans(),
    max_jobs=st.integers(1, 10_000),
    expires=st.integers(0, 2**50),
)
def test_encode_then_parse_round_trips(
    pod: str, in_flight: int, completed: int, draining: bool, max_jobs: int, expires: int
) -> None:
    body = encode_heartbeat_body(
        pod=pod, in_flight=in_flight, completed=completed, draining=draining, max_jobs=max_jobs
    )
    assert parse_heartbeat(complete(body, expires)) == Heartbeat(
        pod=pod,
        in_flight=in_flight,
        completed=completed,
        draining=draining,
        max_jobs=max_jobs,
        expires_at_ms=expires,
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[1, 2]",
        b'{"version": 2, "pod": "p", "in_flight": 0, "completed": 0, "draining": false,'
        b' "max_jobs": 1, "expires_at_ms": 1}',
        b'{"version": 1, "pod": "p", "in_flight": "0", "completed": 0, "draining": false,'
        b' "max_jobs": 1, "expires_at_ms": 1}',
        b'{"version": 1, "pod": "p", "in_flight": 0, "completed": 0, "draining": 0,'
        b' "max_jobs": 1, "expires_at_ms": 1}',
        b'{"version": 1, "pod": "p", "in_flight": 0, "completed": 0, "draining": false,'
        b' "max_jobs": 1}',
    ],
    ids=["not-json", "not-object", "future-version", "string-count", "int-flag", "no-expiry"],
)
def test_malformed_heartbeats_are_rejected(raw: bytes) -> None:
    with pytest.raises(HeartbeatFormatError):
        parse_heartbeat(raw)


def test_live_heartbeats_drops_expired_and_malformed_and_sorts_by_pod() -> None:
    def beat(pod: str, expires: int) -> bytes:
        body = encode_heartbeat_body(pod=pod, in_flight=1, completed=2, draining=False, max_jobs=3)
        return complete(body, expires).encode()

    reply = {b"b": beat("b", 2_000), b"a": beat("a", 1_500), b"old": beat("old", 999), b"x": b"?"}
    assert [h.pod for h in live_heartbeats(reply, now_ms=1_000)] == ["a", "b"]


def test_redis_time_and_key_formats() -> None:
    assert redis_time_ms((1_700_000_000, 123_999)) == 1_700_000_000_123
    assert heartbeats_key("arq:queue") == "arqfleet:heartbeats:arq:queue"
    assert heartbeat_expiry_key("arq:queue") == "arqfleet:heartbeat-expiry:arq:queue"
