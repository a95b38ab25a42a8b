"""Pure: the scaling history that stabilization windows and step policies read, and its form
in the JobQueue's status (so an operator restart resumes the same windows).

What is kept is what can still decide something, nothing more:

* `latest`: the recommendation in force since the last time it changed. Recommendations are a
  step function of time (each one holds until the next differs), so a queue whose
  recommendation stays the same changes nothing here, and causes no status write.
* `up` / `down`: earlier recommendations that can still be the minimum (scale-up window) or
  the maximum (scale-down window), each with the time it stopped being the latest. They are
  monotonic deques: an entry that a later one or `latest` dominates is dropped when it is
  dominated, so each holds a handful of entries whatever the poll rate.
* `changes`: recent replica changes, for the per-period step policies (HPA's scale events).
* `discovery_since`: when the scaler last woke a worker to learn the app's cron schedule.

"Until" times are rounded up to a quantum of the window (a thirtieth, at most ten seconds):
a recommendation that flips back and forth within one quantum leaves the history as it was,
so a noisy queue writes its status at most once per quantum. Rounding up only ever holds a
recommendation a little longer (a slightly longer window), never shorter.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from arqfleet.operator.conditions import timestamp

# Longest quantum for "until" times (see the module docstring).
MAX_QUANTUM_SECONDS = 10
# Replica changes are kept this long at most: the longest policy period the CRD allows.
MAX_PERIOD_SECONDS = 1800


@dataclass(frozen=True)
class Held:
    """A recommendation that held until `until` (epoch seconds)."""

    replicas: int
    until: int


@dataclass(frozen=True)
class Change:
    """The scaler changed replicas by `delta` at `at` (epoch seconds)."""

    at: int
    delta: int


@dataclass(frozen=True)
class ScaleHistory:
    latest: int | None = None
    up: tuple[Held, ...] = ()  # replicas increasing front to back; front is the minimum
    down: tuple[Held, ...] = ()  # replicas decreasing front to back; front is the maximum
    changes: tuple[Change, ...] = ()
    discovery_since: int | None = None

    # -- reading --------------------------------------------------------------------------

    def window_min(self, now: float, window: int, recommendation: int) -> int:
        """The smallest recommendation within the last `window` seconds, this one included."""
        held = [h.replicas for h in self.up if window > 0 and h.until > now - window]
        return min([recommendation, *held])

    def window_max(self, now: float, window: int, recommendation: int) -> int:
        """The largest recommendation within the last `window` seconds, this one included."""
        held = [h.replicas for h in self.down if window > 0 and h.until > now - window]
        return max([recommendation, *held])

    def changed_within(self, now: float, period: int) -> tuple[int, int]:
        """(replicas added, replicas removed) by the scaler within the last `period` s."""
        recent = [c.delta for c in self.changes if c.at > now - period]
        return sum(d for d in recent if d > 0), -sum(d for d in recent if d < 0)

    # -- writing (each returns a new history; equal to self when nothing changed) -----------

    def record(
        self, recommendation: int, now: float, *, up_window: int, down_window: int
    ) -> ScaleHistory:
        """The history after `recommendation` was made at `now`."""
        if self.latest is None:
            return replace(self, latest=recommendation)
        if recommendation == self.latest:
            return self
        closed = self.latest
        up = _push(self.up, closed, now, up_window, keep=lambda back, new: back < new)
        down = _push(self.down, closed, now, down_window, keep=lambda back, new: back > new)
        # The new latest never expires: entries it dominates can never decide a window.
        up = tuple(h for h in up if h.replicas < recommendation)
        down = tuple(h for h in down if h.replicas > recommendation)
        return replace(self, latest=recommendation, up=up, down=down)

    def scaled(self, delta: int, now: float, *, period: int = MAX_PERIOD_SECONDS) -> ScaleHistory:
        """The history after the scaler changed replicas by `delta` at `now`; changes older
        than `period` (the longest policy period) can no longer count and are dropped."""
        if delta == 0:
            return self
        kept = tuple(c for c in self.changes if c.at > now - period)
        return replace(self, changes=(*kept, Change(math.ceil(now), delta)))

    def discovering(self, now: float) -> ScaleHistory:
        return replace(self, discovery_since=math.floor(now))


def quantum(window: int) -> int:
    return max(1, min(MAX_QUANTUM_SECONDS, window // 30))


def _push(
    deque: tuple[Held, ...],
    replicas: int,
    now: float,
    window: int,
    *,
    keep: Callable[[int, int], bool],
) -> tuple[Held, ...]:
    """Close `replicas` into a monotonic deque: drop what expired and what it dominates."""
    if window <= 0:
        return ()  # no window: only the latest recommendation ever counts
    step = quantum(window)
    until = math.ceil(now / step) * step
    alive = [h for h in deque if h.until > now - window]
    while alive and not keep(alive[-1].replicas, replicas):
        alive.pop()
    if alive and alive[-1].until == until:
        return tuple(alive)  # the entry before expires together with this one and wins
    alive.append(Held(replicas, until))
    return tuple(alive)


# -- the form in status.history ---------------------------------------------------------------


def _time(epoch: int) -> str:
    return timestamp(datetime.fromtimestamp(epoch, UTC))


def _epoch(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())


def to_status(history: ScaleHistory) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if history.latest is not None:
        out["recommendation"] = history.latest
    if history.up:
        out["up"] = [{"replicas": h.replicas, "until": _time(h.until)} for h in history.up]
    if history.down:
        out["down"] = [{"replicas": h.replicas, "until": _time(h.until)} for h in history.down]
    if history.changes:
        out["changes"] = [{"at": _time(c.at), "delta": c.delta} for c in history.changes]
    if history.discovery_since is not None:
        out["cronDiscoverySince"] = _time(history.discovery_since)
    return out


def from_status(raw: Mapping[str, Any] | None) -> ScaleHistory:
    """The history a status holds. One that cannot be read counts as none: `decide` then
    starts as HPA does for a new autoscaler, as if the current replicas had just been
    recommended, so nothing scales down before a full window has passed."""
    if not raw:
        return ScaleHistory()
    try:
        latest = raw.get("recommendation")
        return ScaleHistory(
            latest=int(latest) if latest is not None else None,
            up=tuple(Held(int(h["replicas"]), _epoch(h["until"])) for h in raw.get("up") or ()),
            down=tuple(Held(int(h["replicas"]), _epoch(h["until"])) for h in raw.get("down") or ()),
            changes=tuple(
                Change(_epoch(c["at"]), int(c["delta"])) for c in raw.get("changes") or ()
            ),
            discovery_since=(
                _epoch(raw["cronDiscoverySince"]) if raw.get("cronDiscoverySince") else None
            ),
        )
    except (KeyError, TypeError, ValueError):
        return ScaleHistory()
