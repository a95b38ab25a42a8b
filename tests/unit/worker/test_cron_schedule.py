"""The cron-next format and the next tick as arq schedules it."""

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


NOON = datetime(2026, 11, 22, 12, 0, 30, 500_000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("jobs", "now", "expected"),
    [
        pytest.param([], NOON, None, id="no-cron-jobs"),
        pytest.param(
            [cron(job, second=0, microsecond=0)],
            NOON,
            ms(NOON.replace(minute=1, second=0, microsecond=0)),
            id="every-minute",
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
            [cron(job, hour=9, minute=0, second=0, microsecond=0)],
            datetime(2026, 11, 22, 8, 0, tzinfo=timezone(timedelta(hours=-5))),
            ms(datetime(2026, 11, 22, 14, 0, tzinfo=UTC)),
            id="in-the-workers-timezone",
        ),
    ],
)
def test_next_tick(jobs: list[Any], now: datetime, expected: int | None) -> None:
    assert next_tick_ms(jobs, now) == expected


def test_arqs_own_schedule_wins_once_it_has_one() -> None:
    every_minute = cron(job, second=0, microsecond=0)
    every_minute.next_run = NOON.replace(minute=5, second=0, microsecond=0)
    assert next_tick_ms([every_minute], NOON) == ms(every_minute.next_run)


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
        b"\xff",
    ],
)
def test_malformed_values_are_refused(raw: bytes) -> None:
    with pytest.raises(CronFormatError):
        parse_cron_next(raw)
