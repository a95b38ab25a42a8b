"""The per-queue dead-letter store in Redis: record, list, show, requeue and purge.

A dead letter is a job arq gave up on: it failed on its final try (max tries reached, or a
failure that arq does not retry). The entry keeps what a person needs to decide what to do
(function, error, tries, times) and the arguments only as a size-capped repr; the serialized job
is kept apart, opaque, only to requeue it through arq. Key formats are in `constants`.

This module decides the entry format and the cap/retention policy. It must not decide *when* a
job is dead (that is `instrument` and `runtime`, which know arq's outcome) and must not print.
"""

from __future__ import annotations

import asyncio
import json
import logging
import reprlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from arq.connections import ArqRedis
from arq.jobs import Deserializer, Serializer, deserialize_job, serialize_job
from redis.asyncio import Redis

from arqfleet.worker import constants as c

logger = logging.getLogger("arqfleet.worker")

# Keeps the message of a dead job readable in `dlq list` and bounded in Redis.
ERROR_MESSAGE_CHARS = 2000

# KEYS: index zset, entries hash, payloads hash.
# ARGV: job id, failed-at ms, entry JSON, payload ('' = none), only-if-absent ('1'/'0'),
#       retention cutoff ms, cap.
# One script so that add + trim are atomic and one round trip; trimming here keeps the store
# bounded without a separate janitor process.
_RECORD_LUA = """
if ARGV[5] == '1' and redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
else redis.call('HDEL', KEYS[3], ARGV[1]) end
local function drop(ids)
  for _, id in ipairs(ids) do
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
  end
end
drop(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[6]))
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[7])
if excess > 0 then drop(redis.call('ZRANGE', KEYS[1], 0, excess - 1)) end
return 1
"""


@dataclass(frozen=True)
class DeadLetter:
    """One dead job, as stored (JSON) and shown by `arqfleet dlq`."""

    job_id: str
    function: str
    queue: str
    enqueued_at_ms: int
    failed_at_ms: int
    tries: int
    error_type: str
    error: str
    args_repr: str
    requeueable: bool
    pod: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, raw: bytes | str) -> DeadLetter:
        return cls(**json.loads(raw))


def args_repr(args: tuple[Any, ...], kwargs: dict[str, Any], max_chars: int) -> str:
    """A repr of the call arguments whose cost and size are bounded, whatever the arguments."""
    shortener = reprlib.Repr()
    # reprlib bounds each element's repr before joining, so a 100 MB argument is never
    # rendered in full just to be cut afterwards.
    shortener.maxstring = shortener.maxother = max(16, max_chars // 4)
    parts = [shortener.repr(a) for a in args[:20]]
    parts += [f"{k}={shortener.repr(v)}" for k, v in sorted(kwargs.items())[:20]]
    text = ", ".join(parts)
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def describe_error(exc: BaseException) -> tuple[str, str]:
    """(type name, message) of the error that killed a job, looking through arq's Retry."""
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    message = str(cause) or repr(cause)
    return type(cause).__name__, message[:ERROR_MESSAGE_CHARS]


class DeadLetterStore:
    """The dead letters of one queue, over an asyncio Redis client (decoded or not)."""

    def __init__(self, redis: Redis, queue_name: str) -> None:
        # Any: redis-py's command stubs type every reply as sync-or-async.
        self.redis: Any = redis
        self.queue_name = queue_name
        self.index_key = c.dlq_index_key(queue_name)
        self.entries_key = c.dlq_entries_key(queue_name)
        self.payloads_key = c.dlq_payloads_key(queue_name)

    async def record(
        self,
        letter: DeadLetter,
        payload: bytes | None,
        *,
        only_if_absent: bool,
        max_entries: int,
        retention_ms: int,
    ) -> bool:
        """Store `letter` and trim the store; False if `only_if_absent` and it was there."""
        cutoff = letter.failed_at_ms - retention_ms
        keys = [self.index_key, self.entries_key, self.payloads_key]
        argv = [
            letter.job_id,
            letter.failed_at_ms,
            letter.to_json(),
            payload or b"",
            "1" if only_if_absent else "0",
            cutoff,
            max_entries,
        ]
        added = await self.redis.eval(_RECORD_LUA, len(keys), *keys, *argv)
        return bool(added)

    async def count(self) -> int:
        return int(await self.redis.zcard(self.index_key))

    async def newest(self, limit: int = 50) -> list[DeadLetter]:
        """The newest `limit` dead letters, newest first."""
        ids = await self.redis.zrevrange(self.index_key, 0, limit - 1)
        if not ids:
            return []
        raws = await self.redis.hmget(self.entries_key, ids)
        return [DeadLetter.from_json(raw) for raw in raws if raw is not None]

    async def get(self, job_id: str) -> DeadLetter | None:
        raw = await self.redis.hget(self.entries_key, job_id)
        return None if raw is None else DeadLetter.from_json(raw)

    async def payload(self, job_id: str) -> bytes | None:
        raw = await self.redis.hget(self.payloads_key, job_id)
        return raw.encode() if isinstance(raw, str) else raw

    async def remove(self, job_ids: list[str]) -> int:
        """Delete these entries; returns how many existed."""
        if not job_ids:
            return 0
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.index_key, *job_ids)
            pipe.hdel(self.entries_key, *job_ids)
            pipe.hdel(self.payloads_key, *job_ids)
            removed, _, _ = await pipe.execute()
        return int(removed)

    async def purge(self) -> int:
        """Delete the whole store of this queue; returns how many entries it had."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zcard(self.index_key)
            pipe.delete(self.index_key, self.entries_key, self.payloads_key)
            count, _ = await pipe.execute()
        return int(count)

    async def requeue(self, job_id: str, deserializer: Deserializer | None = None) -> str:
        """Enqueue the job again through arq (new job id), then drop its dead letter.

        A new id, because arq refuses an id whose result key still exists, and the failed try's
        result is kept for keep_result seconds.
        """
        payload = await self.payload(job_id)
        if payload is None:
            raise LookupError(f"dead letter {job_id!r} has no stored job (too large, or gone)")
        job = deserialize_job(payload, deserializer=deserializer)
        client = ArqRedis(connection_pool=self.redis.connection_pool)
        enqueued = await client.enqueue_job(
            job.function, *job.args, _queue_name=self.queue_name, **job.kwargs
        )
        if enqueued is None:  # pragma: no cover - a fresh uuid4 never collides
            raise RuntimeError(f"arq refused to enqueue a copy of {job_id!r}")
        await self.remove([job_id])
        return str(enqueued.job_id)


@dataclass(frozen=True)
class DeadLetterPolicy:
    """Caps of the store and of each entry (from `WorkerEnv`)."""

    max_entries: int
    retention_seconds: float
    args_repr_chars: int
    payload_max_bytes: int


class DeadLetterRecorder:
    """Worker side: turns a dead job into an entry and writes it off the job's critical path.

    Writes run as background tasks so a dead letter never delays arq's own bookkeeping of the
    job; `flush()` waits for them before the Redis pool is closed at shutdown.
    """

    def __init__(
        self,
        store: DeadLetterStore,
        policy: DeadLetterPolicy,
        *,
        pod: str,
        serializer: Serializer | None,
        on_result: Callable[[str, BaseException | None], None],
    ) -> None:
        self.store = store
        self.policy = policy
        self.pod = pod
        self.serializer = serializer
        self.on_result = on_result
        self._pending: set[asyncio.Task[None]] = set()

    def record_soon(
        self,
        *,
        job_id: str,
        function: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        tries: int,
        enqueued_at_ms: int,
        failed_at_ms: int,
        error: BaseException,
        only_if_absent: bool = False,
    ) -> None:
        error_type, message = describe_error(error)
        payload = self._payload(function, args, kwargs, enqueued_at_ms)
        letter = DeadLetter(
            job_id=job_id,
            function=function,
            queue=self.store.queue_name,
            enqueued_at_ms=enqueued_at_ms,
            failed_at_ms=failed_at_ms,
            tries=tries,
            error_type=error_type,
            error=message,
            args_repr=args_repr(args, kwargs, self.policy.args_repr_chars),
            requeueable=payload is not None,
            pod=self.pod,
        )
        task = asyncio.get_running_loop().create_task(self._write(letter, payload, only_if_absent))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _payload(
        self, function: str, args: tuple[Any, ...], kwargs: dict[str, Any], enqueued_at_ms: int
    ) -> bytes | None:
        try:
            payload = serialize_job(
                function, args, kwargs, None, enqueued_at_ms, serializer=self.serializer
            )
        except Exception:  # arq already serialized these once; a failure here is not fatal
            logger.exception("cannot serialize dead job of %s for requeue", function)
            return None
        if len(payload) > self.policy.payload_max_bytes:
            return None
        return payload

    async def _write(self, letter: DeadLetter, payload: bytes | None, only_if_absent: bool) -> None:
        try:
            added = await self.store.record(
                letter,
                payload,
                only_if_absent=only_if_absent,
                max_entries=self.policy.max_entries,
                retention_ms=int(self.policy.retention_seconds * 1000),
            )
        except Exception as exc:
            logger.error("cannot record dead letter for job %s: %s", letter.job_id, exc)
            self.on_result(letter.function, exc)
            return
        if added:
            logger.warning(
                "job %s (%s) is dead after %d tries: %s: %s",
                letter.job_id,
                letter.function,
                letter.tries,
                letter.error_type,
                letter.error,
            )
            self.on_result(letter.function, None)

    async def flush(self) -> None:
        """Wait for the writes still in flight."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
