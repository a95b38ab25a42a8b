"""`arqfleet dlq list|show|requeue|purge`: inspect and act on a queue's dead letters.

The top-level `arqfleet` command (operator package) mounts this through `add_dlq_parser`;
`python -m arqfleet.worker.cli dlq ...` runs it standalone. This module decides the command line
and the printed output only; the store itself is `dead_letters.DeadLetterStore`. `requeue` reads
and writes jobs with the app's job_serializer/job_deserializer when `--settings` names its
WorkerSettings, else with arq's default (pickle). It must never print a Redis password: URLs are
shown masked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from arq.constants import expires_extra_ms
from arq.jobs import Deserializer, Serializer
from redis.asyncio import Redis
from redis.exceptions import RedisError

from arqfleet.worker.dead_letters import DeadLetter, DeadLetterStore, NotRequeued, UnreadableJob
from arqfleet.worker.loading import SettingsImportFailed, SettingsNotFound, load_settings
from arqfleet.worker.settings import mask_url

DEFAULT_QUEUE = "arq:queue"


@dataclass(frozen=True)
class JobCodec:
    """How the app's jobs are written and read: arq's defaults (pickle) unless its settings say."""

    serializer: Serializer | None = None
    deserializer: Deserializer | None = None
    expires_ms: int = expires_extra_ms
    settings_path: str | None = None


def app_codec(settings_path: str | None) -> JobCodec:
    """The job serializer pair and job expiry of the app's WorkerSettings (class or dict)."""
    if not settings_path:
        return JobCodec()
    settings: Any = load_settings(settings_path)

    def setting(name: str) -> Any:
        return settings.get(name) if isinstance(settings, dict) else getattr(settings, name, None)

    expires = setting("expires_extra_ms")
    return JobCodec(
        serializer=setting("job_serializer"),
        deserializer=setting("job_deserializer"),
        expires_ms=expires_extra_ms if expires is None else int(expires),
        settings_path=settings_path,
    )


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _print_table(letters: list[DeadLetter], total: int) -> None:
    print(f"{total} dead letter(s); newest first")
    if not letters:
        return
    print(f"{'JOB ID':34} {'FUNCTION':20} {'TRIES':>5} {'FAILED AT (UTC)':19}  ERROR")
    for d in letters:
        error = f"{d.error_type}: {d.error}".replace("\n", " ")
        when = _when(d.failed_at_ms)
        print(f"{d.job_id:34} {d.function[:20]:20} {d.tries:>5} {when}  {error[:60]}")


async def _list(store: DeadLetterStore, args: argparse.Namespace, _: JobCodec) -> int:
    letters = await store.newest(args.limit)
    if args.json:
        print(json.dumps([asdict(d) for d in letters], indent=2))
    else:
        _print_table(letters, await store.count())
    return 0


async def _show(store: DeadLetterStore, args: argparse.Namespace, _: JobCodec) -> int:
    code = 0
    for job_id in args.job_ids:
        letter = await store.get(job_id)
        if letter is None:
            print(f"no dead letter {job_id!r} in queue {store.queue_name!r}", file=sys.stderr)
            code = 1
        else:
            print(json.dumps(asdict(letter), indent=2))
    return code


async def _ids(store: DeadLetterStore, args: argparse.Namespace) -> list[str] | None:
    if bool(args.all) == bool(args.job_ids):
        print("give job ids or --all (not both)", file=sys.stderr)
        return None
    if args.all:
        return [d.job_id for d in await store.newest(await store.count() or 1)]
    return list(args.job_ids)


async def _requeue(store: DeadLetterStore, args: argparse.Namespace, codec: JobCodec) -> int:
    ids = await _ids(store, args)
    if ids is None:
        return 2
    code = 0
    for job_id in ids:
        try:
            new_id = await store.requeue(
                job_id,
                serializer=codec.serializer,
                deserializer=codec.deserializer,
                expires_ms=codec.expires_ms,
            )
        except NotRequeued as exc:
            hint = ""
            if isinstance(exc, UnreadableJob) and codec.settings_path is None:
                hint = (
                    "; if the app sets job_serializer/job_deserializer, pass --settings "
                    "with the import path of its WorkerSettings"
                )
            print(f"{job_id}: not requeued: {exc}{hint}", file=sys.stderr)
            code = 1
        else:
            print(f"{job_id}: requeued as {new_id}")
    return code


async def _purge(store: DeadLetterStore, args: argparse.Namespace, _: JobCodec) -> int:
    ids = await _ids(store, args)
    if ids is None:
        return 2
    removed = await store.purge() if args.all else await store.remove(ids)
    print(f"purged {removed} dead letter(s) from {store.queue_name!r}")
    return 0


Action = Callable[[DeadLetterStore, argparse.Namespace, JobCodec], Awaitable[int]]
ACTIONS: dict[str, Action] = {"list": _list, "show": _show, "requeue": _requeue, "purge": _purge}


async def _run(args: argparse.Namespace, codec: JobCodec) -> int:
    redis = Redis.from_url(args.redis)
    try:
        store = DeadLetterStore(redis, args.queue)
        return await ACTIONS[args.dlq_action](store, args, codec)
    finally:
        await redis.aclose()


def run_dlq(args: argparse.Namespace) -> int:
    """Entry point set as `func` on the `dlq` sub-command."""
    if not args.redis:
        print("--redis (or ARQFLEET_REDIS_URL) is required", file=sys.stderr)
        return 2
    try:
        codec = app_codec(args.settings)
    except SettingsNotFound as exc:  # exit codes as arqfleet-worker's for the same path
        print(f"--settings: {exc}", file=sys.stderr)
        return 2
    except SettingsImportFailed as exc:
        print(exc.details, file=sys.stderr, end="")
        print(f"--settings: {exc}", file=sys.stderr)
        return 1
    try:
        return asyncio.run(_run(args, codec))
    except (RedisError, OSError) as exc:
        print(f"redis error at {mask_url(args.redis)}: {type(exc).__name__}", file=sys.stderr)
        return 1


def add_dlq_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `dlq` with list|show|requeue|purge to an argparse subparsers object."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--queue",
        default=os.environ.get("ARQFLEET_QUEUE_NAME", DEFAULT_QUEUE),
        help="arq queue name (default: $ARQFLEET_QUEUE_NAME or arq:queue)",
    )
    common.add_argument(
        "--redis",
        default=os.environ.get("ARQFLEET_REDIS_URL"),
        help="Redis URL (default: $ARQFLEET_REDIS_URL)",
    )
    common.add_argument(
        "--settings",
        help="import path of the app's WorkerSettings (e.g. app.worker.WorkerSettings): requeue "
        "reads and writes jobs with its job_serializer/job_deserializer (default: pickle)",
    )
    dlq: argparse.ArgumentParser = subparsers.add_parser(
        "dlq", help="inspect, requeue or purge dead letters (jobs that failed for good)"
    )
    actions = dlq.add_subparsers(dest="dlq_action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[common], help="newest dead letters")
    listing.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    show = actions.add_parser("show", parents=[common], help="one or more entries as JSON")
    show.add_argument("job_ids", nargs="+", metavar="JOB_ID")
    for name, text in (
        ("requeue", "enqueue again through arq with the original function and arguments"),
        ("purge", "delete entries"),
    ):
        action = actions.add_parser(name, parents=[common], help=text)
        action.add_argument("job_ids", nargs="*", metavar="JOB_ID")
        action.add_argument("--all", action="store_true", help="every entry of the queue")
    dlq.set_defaults(func=run_dlq)
    return dlq


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="arqfleet", description="arqfleet worker tools")
    add_dlq_parser(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
