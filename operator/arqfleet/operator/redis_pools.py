"""Redis connections of the operator: one small client per distinct Redis, shared by every
JobQueue that uses it (the scaling loop probes all of them in one pipeline per round).

URLs carry passwords (from Secrets), so they are never logged or used as labels: a pool is
known by a short hash of its URL. Errors are reported by type and host only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import redis.asyncio as aioredis

# Connect and command timeouts of every operator call to a user's Redis; the scaling loop's
# round deadline sits on top.
TIMEOUT_SECONDS = 2.0


def pool_id(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:12]


def describe(url: str) -> str:
    """host:port/db of a URL, without user or password: safe for messages."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.hostname or '?'}{port}{parts.path or ''}"


@dataclass
class RedisPools:
    _clients: dict[str, aioredis.Redis] = field(default_factory=dict)

    def client(self, url: str) -> aioredis.Redis:
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

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
