"""The only place the operator reads queue state: one Lua script per queue, every queue of a
Redis in one pipeline, one round trip per poll round.

What one probe measures, all against Redis ``TIME`` (never the operator's clock, which is
compared with nothing here):

* due = ``ZCOUNT q -inf now`` and deferred = ``ZCOUNT q (now +inf`` (arq keeps a job in its
  queue ZSET while it runs, so neither is "waiting" yet), deferred due within the scale-down
  window, and when the next deferred job comes due;
* running, from the head of the queue: the first `window` due ids (arq picks the oldest due
  jobs first, so running jobs sit at the head) each checked with ``EXISTS
  arq:in-progress:<id>``; a due id with neither an in-progress key nor a job key is not an arq
  job (or one whose data expired) and is skipped and counted, never scaled for;
* the age of the oldest due job that is not running;
* dead letters (``ZCARD`` of arqfleet's index), every live pod's heartbeat (``HGETALL``:
  O(pods)), and the cron schedule the workers published.

Never ``KEYS``, ``SCAN``, ``ZCARD`` of the queue as its depth, or arq's ``queued_jobs()``:
each costs O(queue) or O(keyspace) on the user's Redis. The script costs O(log n + window).

Which running count wins: the in-progress keys, when the window saw every due job. They are
arq's own truth (a job holds its key exactly while a worker runs it) and they count workers
that arqfleet does not run. Heartbeats are up to one beat old and cover only arqfleet pods, so
they are only a lower bound, used when the window could not see every due job (a backlog
longer than the window): then the larger of the two lower bounds is the best estimate.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from arq.constants import in_progress_key_prefix, job_key_prefix
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from arqfleet.operator.decision import CronInfo, PodLoad, QueueStats
from arqfleet.worker import constants as wc

# Due ids checked for an in-progress key per probe. Running jobs sit at the head of the due
# range, so the window needs to cover the fleet's concurrency (maxReplicas x maxJobs) plus
# outside workers; past this cap the heartbeats fill in (see the module docstring).
MAX_WINDOW = 2000
MIN_WINDOW = 100

# KEYS: queue, heartbeats hash, dead-letter index, cron key.
# ARGV: window, due-soon horizon (ms), in-progress prefix, job prefix.
PROBE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nows = string.format('%.0f', now)
local q = KEYS[1]
local window = tonumber(ARGV[1])
local due = redis.call('ZCOUNT', q, '-inf', nows)
local deferred = redis.call('ZCOUNT', q, '(' .. nows, '+inf')
local soon = 0
local horizon = tonumber(ARGV[2])
if horizon > 0 then
  soon = redis.call('ZCOUNT', q, '(' .. nows, string.format('%.0f', now + horizon))
end
local nxt = redis.call('ZRANGEBYSCORE', q, '(' .. nows, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
local head = redis.call('ZRANGEBYSCORE', q, '-inf', nows, 'WITHSCORES', 'LIMIT', 0, window + 1)
local checked, running, orphans, oldest = 0, 0, 0, false
for i = 1, #head, 2 do
  if checked == window then
    if not oldest then oldest = head[i + 1] end
    break
  end
  checked = checked + 1
  local id = head[i]
  if redis.call('EXISTS', ARGV[3] .. id) == 1 then
    running = running + 1
  elseif redis.call('EXISTS', ARGV[4] .. id) == 0 then
    orphans = orphans + 1
  elseif not oldest then
    oldest = head[i + 1]
  end
end
return {nows, due, deferred, soon, nxt[2] or false, checked, running, orphans, oldest,
        redis.call('ZCARD', KEYS[3]), redis.call('HGETALL', KEYS[2]), redis.call('GET', KEYS[4])}
"""
# Redis names a script by the SHA-1 of its text (EVALSHA).
PROBE_SHA = hashlib.sha1(PROBE_LUA.encode()).hexdigest()


class ProbeError(Exception):
    """The queue could not be read (Redis down, slow, refusing the script, or a bad reply)."""


@dataclass(frozen=True)
class ProbeRequest:
    queue_name: str
    window: int  # due ids checked for in-progress keys
    due_soon_seconds: float  # horizon for "deferred jobs due soon" (the scale-down window)


@dataclass(frozen=True)
class ProbeResult:
    stats: QueueStats
    redis_time_ms: int
    running_from_keys: int
    running_from_heartbeats: int
    window_complete: bool  # the window saw every due job
    skipped: int  # due ids that are not arq jobs (no job key, not running)
    bad_heartbeats: int  # heartbeat values that could not be read


def window_for(max_replicas: int, max_jobs: int) -> int:
    """Enough due ids to see every job the fleet can run at once, within bounds."""
    return max(MIN_WINDOW, min(MAX_WINDOW, max_replicas * max_jobs * 2))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _score(value: Any) -> float | None:
    """A ZSET score from the script, or None when there is none or it is not finite."""
    if value is None:
        return None
    score = float(_text(value))
    return score if math.isfinite(score) else None


def _cron(raw: Any, now_ms: int) -> CronInfo | None:
    if raw is None:
        return None
    try:
        tick = wc.parse_cron_next(raw)
    except wc.CronFormatError:
        return None  # unreadable (e.g. a newer worker's format): as if unknown
    return CronInfo(None if tick is None else (tick - now_ms) / 1000)


def parse_reply(reply: Sequence[Any]) -> ProbeResult:
    """One script reply -> ProbeResult (raises ProbeError if it is not one)."""
    try:
        (now_raw, due, deferred, soon, next_score, checked, running, orphans, oldest, dlq) = reply[
            :10
        ]
        beats_flat, cron_raw = reply[10], reply[11]
        now_ms = int(_text(now_raw))
        hash_reply = dict(zip(beats_flat[::2], beats_flat[1::2], strict=True))
    except (TypeError, ValueError) as error:
        raise ProbeError(f"unexpected probe reply: {type(error).__name__}") from error
    well_formed = _all_beats(hash_reply)  # parsed once: 500 pods' beats cost ~5 ms each time
    beats = [beat for beat in well_formed if beat.is_live(now_ms)]
    pods = tuple(
        PodLoad(b.pod, b.in_flight, b.completed, b.draining, b.max_jobs, b.expires_at_ms)
        for b in beats
    )
    reported = sum(b.in_flight for b in beats)
    complete = int(checked) >= int(due)
    running_jobs = int(running) if complete else max(int(running), reported)
    oldest_score = _score(oldest)
    next_score_ms = _score(next_score)
    stats = QueueStats(
        ready=max(0, int(due) - running_jobs - int(orphans)),
        running=running_jobs,
        deferred=int(deferred),
        due_soon=int(soon),
        oldest_ready_seconds=(
            0.0 if oldest_score is None else max(0.0, (now_ms - oldest_score) / 1000)
        ),
        oldest_ready_since_ms=oldest_score,
        next_deferred_seconds=(
            None if next_score_ms is None else max(0.0, (next_score_ms - now_ms) / 1000)
        ),
        dead_letters=int(dlq),
        pods=pods,
        cron=_cron(cron_raw, now_ms),
    )
    return ProbeResult(
        stats=stats,
        redis_time_ms=now_ms,
        running_from_keys=int(running),
        running_from_heartbeats=reported,
        window_complete=complete,
        skipped=int(orphans),
        bad_heartbeats=len(hash_reply) - len(well_formed),
    )


def _all_beats(hash_reply: dict[Any, Any]) -> list[wc.Heartbeat]:
    """Every well-formed heartbeat, live or expired (to count the malformed ones)."""
    return wc.live_heartbeats(hash_reply, -1)


def _keys(queue_name: str) -> list[str]:
    return [
        queue_name,
        wc.heartbeats_key(queue_name),
        wc.dlq_index_key(queue_name),
        wc.cron_next_key(queue_name),
    ]


def _args(request: ProbeRequest) -> list[Any]:
    return [
        request.window,
        int(request.due_soon_seconds * 1000),
        in_progress_key_prefix,
        job_key_prefix,
    ]


async def probe(
    client: Redis,
    requests: Sequence[ProbeRequest],
    *,
    timeout: float,  # noqa: ASYNC109 - one deadline per Redis round is this function's contract
) -> list[ProbeResult | ProbeError]:
    """Probe every queue in `requests` on one Redis: one pipeline, one round trip (three the
    first time a Redis sees the script: NOSCRIPT, SCRIPT LOAD, again). Each result is the
    queue's, or its error; the deadline covers the whole round: a slow Redis delays only its
    own queues."""
    try:
        replies = await asyncio.wait_for(_run(client, requests), timeout)
    except TimeoutError:
        error = ProbeError(f"Redis did not answer within {timeout:g}s")
        return [error for _ in requests]
    except (RedisError, OSError) as exc:
        error = ProbeError(f"Redis did not answer: {type(exc).__name__}")
        return [error for _ in requests]
    results: list[ProbeResult | ProbeError] = []
    for reply in replies:
        if isinstance(reply, Exception):
            results.append(ProbeError(f"probe failed: {type(reply).__name__}"))
            continue
        try:
            results.append(parse_reply(reply))
        except ProbeError as error:
            results.append(error)
    return results


async def _run(client: Redis, requests: Sequence[ProbeRequest]) -> list[Any]:
    replies = await _pipelined(client, requests)
    if any(isinstance(reply, NoScriptError) for reply in replies):
        # This Redis has not seen the script (first probe, restart, SCRIPT FLUSH).
        await client.script_load(PROBE_LUA)
        replies = await _pipelined(client, requests)
    return replies


async def _pipelined(client: Redis, requests: Sequence[ProbeRequest]) -> list[Any]:
    pipe: Any = client.pipeline(transaction=False)
    for request in requests:
        keys = _keys(request.queue_name)
        pipe.evalsha(PROBE_SHA, len(keys), *keys, *_args(request))
    replies: list[Any] = await pipe.execute(raise_on_error=False)
    return replies
