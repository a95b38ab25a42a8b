"""Redis key formats, wire formats and metric names that the worker writes and others read.

The worker is the writer of heartbeats, dead letters and the cron schedule; the operator (and
`arqfleet dlq`) read them. Both sides import this module, so it must stay pure: standard library
only, no Redis client, no clock. Everything a reader needs to interpret a key (its type, its
fields, how expiry works) is documented here, next to the format.

Heartbeats, per queue ``<q>``:

* ``arqfleet:heartbeats:<q>`` is a HASH: field = pod name, value = JSON (see `Heartbeat`).
  Each value carries ``expires_at_ms``, computed from Redis ``TIME`` by the writer, so a reader
  compares it with Redis ``TIME`` too and no two clocks are ever compared.
* ``arqfleet:heartbeat-expiry:<q>`` is a ZSET: member = pod name, score = ``expires_at_ms``.
  Only writers use it, to prune the HASH fields of pods that died without a clean exit
  (``ZRANGEBYSCORE -inf now``), so the HASH stays O(live pods) without any reader scanning.

To read every live pod of a queue in O(pods) and one round trip, pipeline ``TIME`` and
``HGETALL arqfleet:heartbeats:<q>``, then call `live_heartbeats(hash, redis_time_ms(time))`.
Never ``SCAN``/``KEYS``.

Dead letters, per queue ``<q>``:

* ``arqfleet:dlq:<q>`` ZSET: member = job id, score = failure time (epoch ms). ``ZCARD`` is the
  dead-letter count the operator reports.
* ``arqfleet:dlq-entries:<q>`` HASH: field = job id, value = JSON `DeadLetter`-shaped object.
* ``arqfleet:dlq-payloads:<q>`` HASH: field = job id, value = the job re-serialized with the
  worker's arq serializer (for requeue only; never printed).

The cron schedule, per queue ``<q>`` (arq runs ``cron_jobs`` inside running workers, so a fleet
scaled to zero would never fire them; the operator wakes one worker shortly before each tick):

* ``arqfleet:cron-next:<q>`` is a STRING: JSON ``{"version": 1, "next_tick_ms": N}`` where N is
  the earliest next tick (epoch ms) over the settings' cron jobs, or null when the settings have
  no cron jobs. N is computed in the Worker's timezone as arq computes it (see `cron_schedule`).
  Every worker rewrites it with each heartbeat, so it moves forward right after a tick fires. It
  is **not** removed when a worker exits: it must outlive the fleet. It expires a day after its
  tick (30 days when there are no cron jobs), so a deleted queue leaves nothing behind for long.
  The writer computes that TTL in its script from Redis ``TIME``
  (``max(0, N - TIME) + CRON_KEY_TTL_AFTER_TICK_MS``, or ``CRON_KEY_TTL_NO_CRON_MS``) and
  refreshes it on every write. An absent key means "not known": no worker has run since it
  expired. Read it with ``GET`` and `parse_cron_next` (None: no cron jobs; int: the tick).

The queue name always comes last in a key, so any characters it contains (arq's default is
``arq:queue``) cannot collide with another key format.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Final

KEY_PREFIX: Final = "arqfleet:"
HEARTBEATS_KEY_PREFIX: Final = KEY_PREFIX + "heartbeats:"
HEARTBEAT_EXPIRY_KEY_PREFIX: Final = KEY_PREFIX + "heartbeat-expiry:"
DLQ_INDEX_KEY_PREFIX: Final = KEY_PREFIX + "dlq:"
DLQ_ENTRIES_KEY_PREFIX: Final = KEY_PREFIX + "dlq-entries:"
DLQ_PAYLOADS_KEY_PREFIX: Final = KEY_PREFIX + "dlq-payloads:"
CRON_NEXT_KEY_PREFIX: Final = KEY_PREFIX + "cron-next:"

# Version of the heartbeat JSON: a reader refuses what it does not understand instead of
# misreading a future format during a rolling upgrade.
HEARTBEAT_FORMAT_VERSION: Final = 1
# A pod counts as gone after missing two beats: one late beat (GC pause, slow Redis) must not make
# the operator believe a busy pod is idle and pick it for deletion.
HEARTBEAT_TTL_BEATS: Final = 3
# The two heartbeat keys themselves expire this many TTLs after the last write by any pod, so a
# queue whose fleet is gone for good leaves nothing behind in Redis.
HEARTBEAT_KEY_TTL_FACTOR: Final = 10

# Version of the cron-next JSON (as for heartbeats: refuse what is not understood).
CRON_FORMAT_VERSION: Final = 1
# The cron key outlives its tick by a day: the operator needs it until the tick has fired and a
# woken worker has written the next one, and a queue that is gone should not keep it for long.
CRON_KEY_TTL_AFTER_TICK_MS: Final = 24 * 3600 * 1000
# "No cron jobs" is kept for 30 days: the operator wakes a worker to learn the schedule again
# only after it expires, so a queue at zero without cron jobs costs one pod start a month.
CRON_KEY_TTL_NO_CRON_MS: Final = 30 * 24 * 3600 * 1000

# Metric names (prefix arqfleet_worker_, ARCHITECTURE.md). Labels are function names and
# outcomes only: job arguments are unbounded and may be personal data.
METRIC_PREFIX: Final = "arqfleet_worker_"
METRIC_JOBS_STARTED: Final = METRIC_PREFIX + "jobs_started"  # counter, label: function
METRIC_JOBS_FINISHED: Final = METRIC_PREFIX + "jobs_finished"  # counter: function, outcome
METRIC_JOB_DURATION: Final = METRIC_PREFIX + "job_duration_seconds"  # histogram: function
METRIC_QUEUE_WAIT: Final = METRIC_PREFIX + "job_queue_wait_seconds"  # histogram: function
METRIC_IN_PROGRESS: Final = METRIC_PREFIX + "jobs_in_progress"  # gauge
METRIC_DRAINING: Final = METRIC_PREFIX + "draining"  # gauge, 1 while draining
METRIC_REDIS_ERRORS: Final = METRIC_PREFIX + "redis_errors"  # counter, label: operation
METRIC_DEAD_LETTERS: Final = METRIC_PREFIX + "dead_letters"  # counter, label: function

# Outcomes of one execution of a job function (one try), the values of the `outcome` label.
OUTCOME_SUCCESS: Final = "success"
OUTCOME_FAILURE: Final = "failure"
OUTCOME_RETRY: Final = "retry"
OUTCOME_TIMEOUT: Final = "timeout"
OUTCOME_CANCELLED: Final = "cancelled"
OUTCOMES: Final = (
    OUTCOME_SUCCESS,
    OUTCOME_FAILURE,
    OUTCOME_RETRY,
    OUTCOME_TIMEOUT,
    OUTCOME_CANCELLED,
)


def heartbeats_key(queue_name: str) -> str:
    """HASH pod name -> heartbeat JSON for one queue."""
    return HEARTBEATS_KEY_PREFIX + queue_name


def heartbeat_expiry_key(queue_name: str) -> str:
    """ZSET pod name -> expires_at_ms, used by writers to prune dead pods."""
    return HEARTBEAT_EXPIRY_KEY_PREFIX + queue_name


def dlq_index_key(queue_name: str) -> str:
    """ZSET job id -> failed-at epoch ms; ZCARD is the dead-letter count."""
    return DLQ_INDEX_KEY_PREFIX + queue_name


def dlq_entries_key(queue_name: str) -> str:
    """HASH job id -> dead-letter JSON."""
    return DLQ_ENTRIES_KEY_PREFIX + queue_name


def dlq_payloads_key(queue_name: str) -> str:
    """HASH job id -> serialized job (arq serializer), used only to requeue."""
    return DLQ_PAYLOADS_KEY_PREFIX + queue_name


def cron_next_key(queue_name: str) -> str:
    """STRING: the next cron tick the workers of this queue published (see the docstring)."""
    return CRON_NEXT_KEY_PREFIX + queue_name


class CronFormatError(ValueError):
    """A cron-next value that is not one this version understands."""


def encode_cron_next(next_tick_ms: int | None) -> str:
    """The cron-next JSON; None means the settings have no cron jobs."""
    return json.dumps(
        {"version": CRON_FORMAT_VERSION, "next_tick_ms": next_tick_ms}, separators=(",", ":")
    )


def parse_cron_next(raw: bytes | str) -> int | None:
    """The next tick (epoch ms) of a cron-next value, or None when the settings have no cron jobs.

    The three states a reader must tell apart: ``GET`` returned nil (the key is absent: the
    schedule is not known, do not call this), this returned None (known: no cron jobs), this
    returned an int (known: the earliest next tick, compare it with Redis ``TIME``). Raises
    `CronFormatError` when the value is malformed, lacks a field or is of an unknown version.
    """
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CronFormatError(f"cron-next is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CronFormatError("cron-next is not a JSON object")
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise CronFormatError(f"cron-next 'version' is not an integer: {version!r}")
    if version != CRON_FORMAT_VERSION:
        raise CronFormatError(f"unknown cron-next version {version}")
    # Required even when null: a value without it must not read as "no cron jobs".
    if "next_tick_ms" not in data:
        raise CronFormatError("cron-next has no 'next_tick_ms'")
    tick = data["next_tick_ms"]
    if tick is None:
        return None
    if isinstance(tick, bool) or not isinstance(tick, int):
        raise CronFormatError(f"cron-next 'next_tick_ms' is not an integer or null: {tick!r}")
    return tick


class HeartbeatFormatError(ValueError):
    """A heartbeat value that is not a heartbeat this version understands."""


@dataclass(frozen=True)
class Heartbeat:
    """What one pod last reported about itself.

    `in_flight` is the number of jobs running on the pod when it wrote the beat; `completed` counts
    job executions (tries) finished since the pod started, whatever their outcome, so the
    difference between two beats is the pod's throughput.
    """

    pod: str
    in_flight: int
    completed: int
    draining: bool
    max_jobs: int
    expires_at_ms: int
    version: int = HEARTBEAT_FORMAT_VERSION

    def is_live(self, now_ms: int) -> bool:
        """True while the beat has not expired, `now_ms` being Redis TIME."""
        return self.expires_at_ms > now_ms


def encode_heartbeat_body(
    *, pod: str, in_flight: int, completed: int, draining: bool, max_jobs: int
) -> str:
    """The heartbeat JSON without `expires_at_ms`, which the writer's script appends from TIME.

    The object is left open (no closing brace) on purpose: the Lua script completes it, so the
    expiry comes from the Redis clock without a JSON library round trip in Lua (cjson would turn
    a 13-digit millisecond timestamp into a float).
    """
    body = json.dumps(
        {
            "version": HEARTBEAT_FORMAT_VERSION,
            "pod": pod,
            "in_flight": in_flight,
            "completed": completed,
            "draining": draining,
            "max_jobs": max_jobs,
        },
        separators=(",", ":"),
    )
    return body[:-1]


def _int_field(data: dict[str, Any], name: str) -> int:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise HeartbeatFormatError(f"heartbeat field {name!r} is not an integer: {value!r}")
    return value


def parse_heartbeat(raw: bytes | str) -> Heartbeat:
    """Parse one value of the heartbeats HASH; raises `HeartbeatFormatError` if malformed."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HeartbeatFormatError(f"heartbeat is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise HeartbeatFormatError("heartbeat is not a JSON object")
    version = _int_field(data, "version")
    if version != HEARTBEAT_FORMAT_VERSION:
        raise HeartbeatFormatError(f"unknown heartbeat version {version}")
    pod, draining = data.get("pod"), data.get("draining")
    if not isinstance(pod, str) or not isinstance(draining, bool):
        raise HeartbeatFormatError("heartbeat 'pod' must be a string and 'draining' a boolean")
    return Heartbeat(
        pod=pod,
        in_flight=_int_field(data, "in_flight"),
        completed=_int_field(data, "completed"),
        draining=draining,
        max_jobs=_int_field(data, "max_jobs"),
        expires_at_ms=_int_field(data, "expires_at_ms"),
        version=version,
    )


def redis_time_ms(time_reply: tuple[int, int] | list[Any]) -> int:
    """Redis ``TIME`` reply (seconds, microseconds) as epoch milliseconds."""
    seconds, micros = time_reply
    return int(seconds) * 1000 + int(micros) // 1000


def live_heartbeats(hash_reply: dict[Any, Any], now_ms: int) -> list[Heartbeat]:
    """The unexpired, well-formed heartbeats of an ``HGETALL`` reply, sorted by pod name.

    Malformed values are skipped rather than raised: one pod of a newer version must not blind
    the operator to every other pod of the queue.
    """
    beats = []
    for raw in hash_reply.values():
        try:
            beat = parse_heartbeat(raw)
        except HeartbeatFormatError:
            continue
        if beat.is_live(now_ms):
            beats.append(beat)
    return sorted(beats, key=lambda beat: beat.pod)


def heartbeat_as_dict(beat: Heartbeat) -> dict[str, Any]:
    """A heartbeat as plain data (for logs and status output)."""
    return asdict(beat)
