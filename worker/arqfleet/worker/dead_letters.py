"""The per-queue dead-letter store in Redis: record, list, show, requeue and purge.

A dead letter is a job arq gave up on: it failed on its final try (max tries reached, or a
failure that arq does not retry). The entry keeps what a person needs to decide what to do
(function, error, tries, times) and the arguments only as a size-capped repr; the serialized job
is kept apart, opaque, only to requeue it through arq. Key formats are in `constants`.

This module decides the entry format, the cap/retention policy and how a requeue is made safe
(one script: the copy is enqueued and the dead letter dropped together, or nothing happens). It
must not decide *when* a job is dead (that is `instrument` and `runtime`, which know arq's
outcome), must not print, and the recorder must never raise into arq's job bookkeeping.
"""

from __future__ import annotations

import asyncio
import json
import logging
import reprlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from uuid import uuid4

from arq.constants import expires_extra_ms, job_key_prefix, result_key_prefix
from arq.jobs import Deserializer, SerializationError, Serializer, deserialize_job, serialize_job
from arq.utils import timestamp_ms
from redis.asyncio import Redis

from arqfleet.worker import constants as c

logger = logging.getLogger("arqfleet.worker")

# Keeps the message of a dead job readable in `dlq list` and bounded in Redis.
ERROR_MESSAGE_CHARS = 2000
# What arq 0.28 (`arq.jobs.serialize_result`) stores as a failed job's result when the app's
# job_serializer cannot encode the exception (msgpack, JSON): the error itself is lost.
ARQ_UNSERIALIZABLE_RESULT = "unable to serialize result"

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

# KEYS: index zset, entries hash, payloads hash, new job key, new result key, queue zset.
# ARGV: dead job id, its payload as read, new job id, new serialized job, score ms, expiry ms.
# One script, so a requeue is all or nothing: the copy is in the queue and the dead letter gone,
# or neither. Checking the payload read by the client makes it idempotent by job id: a second
# requeue of the same dead letter (a retry after a lost reply, or a concurrent one) finds it gone
# and enqueues nothing. The writes of arq's `enqueue_job` (job key with expiry, ZADD) are copied.
_REQUEUE_LUA = """
local stored = redis.call('HGET', KEYS[3], ARGV[1])
if not stored then return 0 end
if stored ~= ARGV[2] then return -1 end
if redis.call('EXISTS', KEYS[4], KEYS[5]) > 0 then return -2 end
redis.call('SET', KEYS[4], ARGV[4], 'PX', ARGV[6])
redis.call('ZADD', KEYS[6], ARGV[5], ARGV[3])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"""


class NotRequeued(Exception):
    """A dead letter that was not requeued; the store and the queue are unchanged."""


class UnreadableJob(NotRequeued):
    """The stored job cannot be read with the deserializer given (not the app's)."""


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


def describe_error(error: object) -> tuple[str, str]:
    """(type name, message) of what killed a job, looking through arq's Retry.

    `error` is whatever arq's result holds: an exception, or, when the app's serializer cannot
    encode exceptions, arq's placeholder string (or whatever the serializer made of it).
    """
    if not isinstance(error, BaseException):
        if error == ARQ_UNSERIALIZABLE_RESULT:
            text = (
                "the failure could not be serialized by the app's job_serializer "
                f"(arq stored {ARQ_UNSERIALIZABLE_RESULT!r}); the worker's log has the error"
            )
        else:
            text = error if isinstance(error, str) else repr(error)
        return "unknown", text[:ERROR_MESSAGE_CHARS]
    cause = error.__cause__ if error.__cause__ is not None else error
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

    async def requeue(
        self,
        job_id: str,
        *,
        serializer: Serializer | None = None,
        deserializer: Deserializer | None = None,
        expires_ms: int = expires_extra_ms,
    ) -> str:
        """Enqueue a copy of the dead job (new job id) and drop its dead letter, atomically.

        The job is read with `deserializer` and written with `serializer`, the app's pair (arq's
        default, pickle, when None), so the app's workers can read the copy; its enqueue time is
        now, as for any job arq enqueues. A new id, because arq refuses an id whose result key
        still exists, and the failed try's result is kept for keep_result seconds. Raises
        `NotRequeued` (store unchanged) when the entry is gone, has no stored job, or the stored
        job cannot be read (`UnreadableJob`).
        """
        payload = await self.payload(job_id)
        if payload is None:
            if await self.get(job_id) is None:
                raise NotRequeued("not in the dead-letter store (already requeued or purged)")
            raise NotRequeued(
                "no stored job to requeue (over the payload cap, or not serializable when recorded)"
            )
        try:
            job = deserialize_job(payload, deserializer=deserializer)
        except SerializationError as exc:
            raise UnreadableJob(f"cannot read the stored job: {exc}") from exc
        now_ms = timestamp_ms()
        try:
            copy = serialize_job(
                job.function, job.args, job.kwargs, None, now_ms, serializer=serializer
            )
        except SerializationError as exc:
            raise NotRequeued(f"cannot write the copy: {exc}") from exc
        new_id = uuid4().hex
        keys = [
            self.index_key,
            self.entries_key,
            self.payloads_key,
            job_key_prefix + new_id,
            result_key_prefix + new_id,
            self.queue_name,
        ]
        argv = [job_id, payload, new_id, copy, now_ms, expires_ms]
        outcome = int(await self.redis.eval(_REQUEUE_LUA, len(keys), *keys, *argv))
        if outcome == 0:
            raise NotRequeued("not in the dead-letter store (already requeued or purged)")
        if outcome == -1:
            raise NotRequeued("recorded again while being requeued: requeue it again")
        if outcome == -2:  # pragma: no cover - a fresh uuid4 never collides
            raise NotRequeued(f"job id {new_id} is taken")
        return new_id


@dataclass(frozen=True)
class DeadLetterPolicy:
    """Caps of the store and of each entry (from `WorkerEnv`)."""

    max_entries: int
    retention_seconds: float
    args_repr_chars: int
    payload_max_bytes: int


class DeadLettersNotWritten(Exception):
    """Some dead letters could not be written to Redis (each is logged by its job id)."""


class DeadLetterRecorder:
    """Worker side: turns a dead job into an entry and writes it off the job's critical path.

    Writes run as background tasks so a dead letter never delays arq's own bookkeeping of the
    job; `flush()` waits for them before the Redis pool is closed at shutdown. Nothing here raises
    into the caller (arq's job task): a dead letter that cannot be built or written is logged and
    lost, the job itself goes on as arq decides.
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
        self._pending: set[asyncio.Task[bool]] = set()

    @property
    def pending(self) -> int:
        """Writes still in flight."""
        return len(self._pending)

    def record_soon(
        self,
        *,
        job_id: str,
        function: str,
        args: tuple[Any, ...] | list[Any],
        kwargs: dict[str, Any],
        tries: int,
        enqueued_at_ms: int,
        failed_at_ms: int,
        error: object,
        only_if_absent: bool = False,
    ) -> None:
        """Write a dead letter in the background; never raises (a failure is logged)."""
        try:
            letter, payload = self._letter(
                job_id, function, tuple(args), kwargs, tries, enqueued_at_ms, failed_at_ms, error
            )
            task = asyncio.get_running_loop().create_task(
                self._write(letter, payload, only_if_absent)
            )
        except Exception:
            # Called from arq's job task: raising here would replace the job's outcome in arq,
            # or end the worker when called from finish_failed_job.
            logger.exception("cannot build the dead letter of job %s (%s)", job_id, function)
            return
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _letter(
        self,
        job_id: str,
        function: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        tries: int,
        enqueued_at_ms: int,
        failed_at_ms: int,
        error: object,
    ) -> tuple[DeadLetter, bytes | None]:
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
        return letter, payload

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

    async def _write(self, letter: DeadLetter, payload: bytes | None, only_if_absent: bool) -> bool:
        """Write one letter; False (logged) when Redis did not take it."""
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
            self._report(letter.function, exc)
            return False
        if added:
            logger.warning(
                "job %s (%s) is dead after %d tries: %s: %s",
                letter.job_id,
                letter.function,
                letter.tries,
                letter.error_type,
                letter.error,
            )
            self._report(letter.function, None)
        return True

    def _report(self, function: str, error: BaseException | None) -> None:
        try:
            self.on_result(function, error)
        except Exception:  # metrics and health bookkeeping must not lose the write's outcome
            logger.exception("cannot report the dead letter of %s", function)

    async def flush(self) -> None:
        """Wait for the writes still in flight; raises `DeadLettersNotWritten` if any failed."""
        if not self._pending:
            return
        written = await asyncio.gather(*self._pending, return_exceptions=True)
        failed = sum(1 for ok in written if ok is not True)
        if failed:
            raise DeadLettersNotWritten(f"{failed} dead letter(s) could not be written")
