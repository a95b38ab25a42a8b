"""Redis connections of the operator: one small client per distinct Redis, shared by every
JobQueue that uses it, and a cached reachability check.

URLs carry passwords (from Secrets), so they are never logged or used as labels: a pool is
known by a short hash of its URL. Errors are reported by type and host only.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError

# Connect and command timeouts: a JobQueue's reconcile waits on this check, so an unreachable
# Redis costs at most a few seconds, once per cache period.
TIMEOUT_SECONDS = 2.0


def pool_id(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:12]


def describe(url: str) -> str:
    """host:port/db of a URL, without user or password: safe for messages."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.hostname or '?'}{port}{parts.path or ''}"


@dataclass(frozen=True)
class Reachability:
    reachable: bool
    message: str
    checked_at: float  # monotonic


@dataclass
class RedisPools:
    max_age_seconds: float = 10.0
    _clients: dict[str, aioredis.Redis] = field(default_factory=dict)
    _last: dict[str, Reachability] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def _client(self, url: str) -> aioredis.Redis:
        key = pool_id(url)
        client = self._clients.get(key)
        if client is None:
            client = aioredis.Redis.from_url(
                url,
                socket_connect_timeout=TIMEOUT_SECONDS,
                socket_timeout=TIMEOUT_SECONDS,
                max_connections=4,  # the operator sends a few pipelined probes, not traffic
            )
            self._clients[key] = client
        return client

    async def check(self, url: str) -> Reachability:
        """PING this Redis, or reuse an answer younger than max_age_seconds."""
        key = pool_id(url)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # JobQueues sharing a Redis share one check
            last = self._last.get(key)
            if last is not None and time.monotonic() - last.checked_at < self.max_age_seconds:
                return last
            result = await self._ping(url)
            self._last[key] = result
            return result

    async def _ping(self, url: str) -> Reachability:
        where = describe(url)
        try:
            await asyncio.wait_for(self._client(url).ping(), timeout=TIMEOUT_SECONDS * 2)
        except (RedisError, OSError, TimeoutError) as error:
            reason = type(error).__name__
            return Reachability(
                False, f"Redis at {where} did not answer: {reason}", time.monotonic()
            )
        return Reachability(True, f"Redis at {where} answered", time.monotonic())

    async def health(self) -> dict[str, int]:
        """For the liveness probe: every pool pinged now (not cached), counted."""
        urls = {key: client for key, client in self._clients.items()}
        results = await asyncio.gather(
            *(self._ping_client(client) for client in urls.values()), return_exceptions=False
        )
        return {
            "pools": len(results),
            "reachable": sum(results),
            "unreachable": len(results) - sum(results),
        }

    @staticmethod
    async def _ping_client(client: aioredis.Redis) -> bool:
        try:
            await asyncio.wait_for(client.ping(), timeout=TIMEOUT_SECONDS * 2)
        except (RedisError, OSError, TimeoutError):
            return False
        return True

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
