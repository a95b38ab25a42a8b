"""ScaleHistory: monotonic window deques, quantized times and the status round trip."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as hs

from arqfleet.operator import history as hi
from arqfleet.operator.history import Change, Held, ScaleHistory

W = 300  # a down window; its quantum is 10 s


def test_first_recommendation_only_sets_latest() -> None:
    assert ScaleHistory().record(3, 1000, up_window=0, down_window=W) == ScaleHistory(latest=3)


def test_a_change_closes_the_previous_value_into_each_window() -> None:
    history = ScaleHistory(latest=5).record(2, 1003, up_window=60, down_window=W)
    assert history.latest == 2
    assert history.down == (Held(5, 1010),)  # rounded up to the 10 s quantum
    assert history.up == ()  # 5 > 2 can never be the minimum while 2 is in force
    assert history.window_max(1100, W, 2) == 5
    assert history.window_max(1309, W, 2) == 5
    assert history.window_max(1310, W, 2) == 2  # expired


def test_flapping_within_a_quantum_changes_nothing() -> None:
    history = ScaleHistory(latest=2).record(1, 1001, up_window=0, down_window=W)
    again = history.record(2, 1002, up_window=0, down_window=W).record(
        1, 1004, up_window=0, down_window=W
    )
    assert again == history


def test_dominated_entries_are_dropped() -> None:
    history = ScaleHistory(latest=4)
    for replicas, t in [(6, 1000), (3, 1020), (5, 1040), (1, 1060)]:
        history = history.record(replicas, t, up_window=0, down_window=W)
    # 4 is dominated by the 6 that replaced it, and 3 by the 5 that replaced it.
    assert history.down == (Held(6, 1020), Held(5, 1060))
    assert history.window_max(1070, W, 1) == 6


def test_zero_window_keeps_nothing() -> None:
    history = ScaleHistory(latest=4).record(1, 1000, up_window=0, down_window=0)
    assert (history.up, history.down) == ((), ())


def test_changes_within_a_period() -> None:
    history = ScaleHistory(latest=1).scaled(4, 1000).scaled(-1, 1010).scaled(2, 1020)
    assert history.changed_within(1021, 15) == (2, 1)
    assert history.changed_within(1021, 60) == (6, 1)
    assert history.scaled(0, 1030) is history


holds = hs.lists(hs.builds(Held, hs.integers(0, 1000), hs.integers(1_700_000_000, 1_900_000_000)))
histories = hs.builds(
    ScaleHistory,
    latest=hs.one_of(hs.none(), hs.integers(0, 1000)),
    up=holds.map(tuple),
    down=holds.map(tuple),
    changes=hs.lists(
        hs.builds(Change, hs.integers(1_700_000_000, 1_900_000_000), hs.integers(-50, 50))
    ).map(tuple),
    discovery_since=hs.one_of(hs.none(), hs.integers(1_700_000_000, 1_900_000_000)),
)


@given(histories)
def test_status_round_trip(history: ScaleHistory) -> None:
    assert hi.from_status(hi.to_status(history)) == history


def test_unreadable_status_is_no_history() -> None:
    assert hi.from_status({"recommendation": "many"}) == ScaleHistory()
    assert hi.from_status({"down": [{"replicas": 2}]}) == ScaleHistory()
    assert hi.from_status(None) == ScaleHistory()
