"""This pod's heartbeat: in-flight and completed jobs and the draining flag, in Redis with a TTL.

Decides when beats are written (every `interval`, and at once when draining starts, so the
operator sees a draining pod within a round trip rather than a period) and how a beat is written
(one Lua script: prune expired pods, upsert this pod, refresh key TTLs, and publish the next cron
tick, using Redis TIME so that no two clocks are compared). The cron key is never removed: it
must outlive the fleet. The key formats and the reader's side are in `constants`. It must
not block jobs: a failed beat is counted and retried next period, never raised, and a cron
schedule that cannot be computed skips only the cron write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from arqfleet.worker import constants as c
from arqfleet.worker.health import Health

logger = logging.getLogger("arqfleet.worker")

# KEYS: heartbeats hash, expiry zset, cron-next key. ARGV: pod, JSON body without its closing
# brace, ttl ms, key ttl ms, cron-next JSON ('' to leave it alone), next tick ms ('' for no cron
# jobs), cron-next TTL without cron jobs, cron-next TTL after its tick.
_BEAT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, pod in ipairs(stale) do redis.call('HDEL', KEYS[1], pod) end
if #stale > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now) end
local expires = string.format('%.0f', now + tonumber(ARGV[3]))
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ',"expires_at_ms":' .. expires .. '}')
redis.call('ZADD', KEYS[2], expires, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
if ARGV[5] ~= '' then
  local ttl = tonumber(ARGV[7])
  if ARGV[6] ~= '' then ttl = math.max(0, tonumber(ARGV[6]) - now) + tonumber(ARGV[8]) end
  redis.call('SET', KEYS[3], ARGV[5], 'PX', string.format('%.0f', ttl))
end
return expires
"""


class Heartbeat:
    """Writes this pod's beat every `interval` seconds until stopped."""

    def __init__(
        self,
        redis: Redis,
        *,
        queue_name: str,
        pod: str,
        interval: float,
        max_jobs: int,
        health: Health,
        snapshot: Callable[[], tuple[int, int]],
        cron_next: Callable[[], int | None] | None = None,
    ) -> None:
        # Any: redis-py's command stubs type every reply as sync-or-async.
        self.redis: Any = redis
        self.pod = pod
        self.interval = interval
        self.max_jobs = max_jobs
        self.health = health
        self.snapshot = snapshot
        self.cron_next = cron_next
        self.hash_key = c.heartbeats_key(queue_name)
        self.expiry_key = c.heartbeat_expiry_key(queue_name)
        self.cron_key = c.cron_next_key(queue_name)
        self.ttl_ms = int(interval * c.HEARTBEAT_TTL_BEATS * 1000)
        self._cron_failing = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def beat(self) -> None:
        """Write one beat now (raises on Redis errors)."""
        in_flight, completed = self.snapshot()
        body = c.encode_heartbeat_body(
            pod=self.pod,
            in_flight=in_flight,
            completed=completed,
            draining=self.health.draining,
            max_jobs=self.max_jobs,
        )
        cron_json, tick = self._cron_args()
        await self.redis.eval(
            _BEAT_LUA,
            3,
            self.hash_key,
            self.expiry_key,
            self.cron_key,
            self.pod,
            body,
            str(self.ttl_ms),
            str(self.ttl_ms * c.HEARTBEAT_KEY_TTL_FACTOR),
            cron_json,
            tick,
            str(c.CRON_KEY_TTL_NO_CRON_MS),
            str(c.CRON_KEY_TTL_AFTER_TICK_MS),
        )

    def _cron_args(self) -> tuple[str, str]:
        """(cron-next JSON, next tick ms or '') for the script; ('', '') leaves the key alone."""
        if self.cron_next is None:
            return "", ""
        try:
            next_tick = self.cron_next()
        except Exception as exc:
            # The user's cron fields are evaluated here, possibly before arq evaluates them. One
            # it cannot schedule must not stop the beats (the operator would take this busy pod
            # for a dead one): skip the cron write, log once, and let arq report it its own way.
            if not self._cron_failing:
                logger.warning("cannot compute the next cron tick: %s: %s", type(exc).__name__, exc)
            self._cron_failing = True
            return "", ""
        self._cron_failing = False
        return c.encode_cron_next(next_tick), "" if next_tick is None else str(next_tick)

    def wake(self) -> None:
        """Beat now instead of at the end of the period (e.g. draining just started)."""
        self._wake.set()

    async def _run(self) -> None:
        failing = False
        while True:
            self._wake.clear()
            try:
                await self.beat()
            except (TimeoutError, RedisError, OSError) as exc:
                self.health.redis_failed("heartbeat", exc)
            except Exception:
                # A bug in building the beat must not end this task: the operator would take a
                # pod that stopped beating for a dead one. Logged once per streak, retried.
                if not failing:
                    logger.exception("cannot write the heartbeat of %s", self.pod)
                failing = True
            else:
                failing = False
                self.health.redis_ok()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="arqfleet-heartbeat")

    async def stop(self, *, remove: bool) -> None:
        """Stop beating; with `remove`, delete this pod's beat (a clean exit), never raising."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if remove:
            try:
                await self.remove()
            except (RedisError, OSError) as exc:
                # The beat expires by itself after its TTL; nothing is lost.
                logger.warning("cannot remove heartbeat of %s: %s", self.pod, exc)

    async def remove(self) -> None:
        """Delete this pod's beat now (raises on Redis errors; the caller bounds the wait)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.hash_key, self.pod)
            pipe.zrem(self.expiry_key, self.pod)
            await pipe.execute()
