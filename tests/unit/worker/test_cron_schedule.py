"""The cron-next format and the next tick as arq schedules it from `now`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from arq import cron
from hypothesis import given
from hypothesis import strategies as hs

from arqfleet.worker.constants import CronFormatError, encode_cron_next, parse_cron_next
from arqfleet.worker.cron_schedule import next_tick_ms


async def job(ctx: dict[str, object]) -> None:
    return None


def ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


NOON = datetime(2026, 11, 22, 12, 0, 30, 500_000, tzinfo=UTC)  # a Sunday
IST = timezone(timedelta(hours=5, minutes=30))


@pytest.mark.parametrize(
    ("jobs", "now", "expected"),
    [
        pytest.param([], NOON, None, id="no-cron-jobs"),
        pytest.param(
            [cron(job, second=0, microsecond=0)],
            NOON.replace(microsecond=0),
            ms(NOON.replace(minute=1, second=0, microsecond=0)),
            id="every-minute-at-12:00:30",
        ),
        pytest.param(
            [cron(job, second=0, microsecond=0)],
            NOON,
            ms(NOON.replace(minute=1, second=0, microsecond=0)),
            id="every-minute-between-seconds",
        ),
        pytest.param(
            [cron(job)],
            NOON,
            ms(NOON.replace(minute=1, second=0, microsecond=123_456)),
            id="arqs-default-microsecond",
        ),
        pytest.param(
            [
                cron(job, name="a", minute=30, second=0, microsecond=0),
                cron(job, name="b", second={45}, microsecond=0),
            ],
            NOON,
            ms(NOON.replace(second=45, microsecond=0)),
            id="earliest-of-two",
        ),
        pytest.param(
            [cron(job, second=0, microsecond=0)],
            NOON.replace(second=0, microsecond=0),
            ms(NOON.replace(minute=1, second=0, microsecond=0)),
            id="a-tick-now-is-past-as-arq-counts",
        ),
        pytest.param(
            [cron(job, second=0, microsecond=0)],
            NOON.replace(minute=59, second=59, microsecond=999_999),
            ms(datetime(2026, 11, 22, 13, 0, tzinfo=UTC)),
            id="a-tick-a-microsecond-away",
        ),
        pytest.param(
            [cron(job, hour=9, minute=0, second=0, microsecond=0)],
            datetime(2026, 11, 22, 8, 0, tzinfo=timezone(timedelta(hours=-5))),
            ms(datetime(2026, 11, 22, 14, 0, tzinfo=UTC)),
            id="in-the-workers-timezone",
        ),
        pytest.param(
            # 12:00:30 UTC is 17:30:30 in IST: IST's midnight comes first, at 18:30 UTC.
            [cron(job, hour=0, minute=0, second=0, microsecond=0)],
            NOON.astimezone(IST),
            ms(datetime(2026, 11, 22, 18, 30, tzinfo=UTC)),
            id="midnight-in-the-workers-timezone",
        ),
        pytest.param(
            # Sunday 17:30 in IST; arq's weekday 0 is Monday, which starts at 18:30 UTC Sunday.
            [cron(job, weekday="mon", hour=0, minute=0, second=0, microsecond=0)],
            NOON.astimezone(IST),
            ms(datetime(2026, 11, 22, 18, 30, tzinfo=UTC)),
            id="weekday-in-the-workers-timezone",
        ),
        pytest.param(
            [cron(job, month=2, day=29, hour=0, minute=0, second=0, microsecond=0)],
            NOON,
            ms(datetime(2028, 2, 29, tzinfo=UTC)),
            id="leap-day-years-ahead",
        ),
    ],
)
def test_next_tick(jobs: list[Any], now: datetime, expected: int | None) -> None:
    assert next_tick_ms(jobs, now) == expected


def test_arqs_running_schedule_and_run_at_startup_do_not_move_the_tick() -> None:
    # arq sets next_run to the start-up time for run_at_startup jobs, and moves it a period on
    # up to a second before a tick: the published tick is the one from `now` all the same.
    at_startup = cron(job, second=0, microsecond=0, run_at_startup=True)
    at_startup.next_run = NOON
    moved_on = cron(job, name="moved", second=0, microsecond=0)
    moved_on.next_run = NOON.replace(minute=2, second=0, microsecond=0)
    expected = ms(NOON.replace(minute=1, second=0, microsecond=0))
    assert next_tick_ms([at_startup], NOON) == expected
    assert next_tick_ms([moved_on], NOON) == expected


def test_now_without_a_timezone_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_tick_ms([cron(job)], NOON.replace(tzinfo=None))


def test_the_wire_format_is_fixed() -> None:
    # The operator of another version reads it: the JSON itself is the contract.
    assert encode_cron_next(1_795_000_000_000) == '{"version":1,"next_tick_ms":1795000000000}'
    assert encode_cron_next(None) == '{"version":1,"next_tick_ms":null}'
    assert parse_cron_next('{"next_tick_ms": null, "version": 1, "extra": 0}') is None


@given(hs.one_of(hs.none(), hs.integers(0, 2**53)))
def test_round_trip(tick: int | None) -> None:
    assert parse_cron_next(encode_cron_next(tick)) == tick


@pytest.mark.parametrize(
    "raw",
    [
        b"{nope",
        b"[1]",
        b'{"version": 2, "next_tick_ms": 1}',
        b'{"version": 1, "next_tick_ms": "1"}',
        b'{"version": true, "next_tick_ms": 1}',
        b'{"version": 1, "next_tick_ms": 1.5}',
        b'{"version": 1.0, "next_tick_ms": 1}',
        b'{"version": 1}',
        b'{"next_tick_ms": 1}',
        b'{"version": 1, "next_tick_ms": true}',
        b"null",
        b"\xff",
    ],
    ids=[
        "not-json",
        "not-an-object",
        "unknown-version",
        "tick-a-string",
        "version-a-bool",
        "tick-a-float",
        "version-a-float",
        "tick-missing",
        "version-missing",
        "tick-a-bool",
        "json-null",
        "not-utf8",
    ],
)
def test_malformed_values_are_refused(raw: bytes) -> None:
    with pytest.raises(CronFormatError):
        parse_cron_next(raw)
