"""What one queue's probe costs Redis, against queue size, jobs in progress and live pods.

    .venv/bin/python bench/probe_cost.py           # 1k, 100k, 1M jobs; ~3 minutes
    .venv/bin/python bench/probe_cost.py --quick   # 1k and 100k, fewer probes; < 1 minute

It starts its own redis-server, fills one arq queue (half due now, half deferred; a job key per
job, as arq writes them), marks the oldest due jobs in progress, writes live heartbeats in the
worker's format, and runs the operator's real probe (`queue_probe.probe`) many times. Per cell:

* commands per probe: the growth of every `cmdstat_*` call count in `INFO commandstats` (the
  commands the Lua script runs count too), per probe;
* round trips: the writes the client makes to the socket (a connection class that counts
  `send_packed_command`), per probe;
* latency p50/p99 on the client, and Redis-side microseconds per probe (`usec` of the script);

beside the naive probes others use, in the same cells: ``ZCARD`` of the queue (KEDA's Redis
scaler: O(1) but counts deferred and running jobs as work) and ``SCAN MATCH arq:in-progress:*``
to count running jobs (O(keyspace)).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, cast

import redis
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import Connection

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "operator"), str(REPO / "worker")]

from arqfleet.operator.queue_probe import ProbeRequest, probe, window_for  # noqa: E402
from arqfleet.worker.constants import encode_heartbeat_body, heartbeats_key  # noqa: E402

QUEUE = "arq:queue"
TIMEOUT = 10.0
# The probe's window for the CRD defaults (maxReplicas 20 x maxJobs 10): what a user gets.
WINDOW = window_for(20, 10)


class CountingConnection(Connection):
    """A connection that counts its socket writes: one per round trip the client starts."""

    writes = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.writes += 1
        await super().send_packed_command(command, check_health)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(workdir)]
    # DEBUG POPULATE writes a million job keys in a second (loading is not what is measured).
    argv += ["--appendonly", "no", "--enable-debug-command", "local"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # redis-server is starting; there is nothing else to wait on
    client.close()
    return process, port


def fill_queue(client: redis.Redis, size: int, now_ms: int) -> None:
    """`size` jobs with ids 0..size-1: the first half due (scores in the past, oldest first),
    the rest deferred up to a day; each with its job key `arq:job:<id>`."""
    client.flushall()
    due = size // 2
    batch: dict[str, int] = {}
    for job in range(size):
        batch[str(job)] = now_ms - 3_600_000 + job if job < due else now_ms + 60_000 + job
        if len(batch) == 20_000:
            client.zadd(QUEUE, batch)
            batch = {}
    if batch:
        client.zadd(QUEUE, batch)
    client.execute_command("DEBUG", "POPULATE", size, "arq:job", 40)  # type: ignore[no-untyped-call]


def set_in_progress(client: redis.Redis, running: int) -> None:
    """The oldest `running` due jobs in progress, as arq marks them."""
    pipe = client.pipeline(transaction=False)
    for job in range(running):
        pipe.psetex(f"arq:in-progress:{job}", 600_000, b"1")
    pipe.execute()


def set_heartbeats(client: redis.Redis, pods: int, now_ms: int) -> None:
    key = heartbeats_key(QUEUE)
    client.delete(key)
    values = {}
    for pod in range(pods):
        body = encode_heartbeat_body(
            pod=f"pod-{pod}", in_flight=2, completed=100, draining=False, max_jobs=10
        )
        values[f"pod-{pod}"] = f'{body},"expires_at_ms":{now_ms + 600_000}}}'
    client.hset(key, mapping=values)


def command_stats(client: redis.Redis) -> dict[str, tuple[int, int]]:
    """cmdstat name -> (calls, usec)."""
    stats = cast(dict[str, Any], client.info("commandstats"))
    return {name: (int(v["calls"]), int(v["usec"])) for name, v in stats.items()}


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(
    sync: redis.Redis, run: Callable[[], Any], times: int, script_cmd: str | None
) -> dict[str, float]:
    """Run `run` `times` times; latency, socket writes, commands and Redis-side usec each."""
    await run()  # warm: the script loaded, the connection open
    sync.config_resetstat()
    writes_before = CountingConnection.writes
    latencies = []
    for _ in range(times):
        began = time.perf_counter()
        await run()
        latencies.append((time.perf_counter() - began) * 1000)
    stats = command_stats(sync)
    stats.pop("cmdstat_config", None)
    calls = sum(c for c, _ in stats.values())
    usec = stats[script_cmd][1] if script_cmd else sum(u for _, u in stats.values())
    return {
        "commands": calls / times,
        "round trips": (CountingConnection.writes - writes_before) / times,
        "p50 ms": quantile(latencies, 0.5),
        "p99 ms": quantile(latencies, 0.99),
        "redis us": usec / times,
    }


async def scan_in_progress(client: Redis) -> int:
    count = 0
    async for _ in client.scan_iter(match="arq:in-progress:*", count=1000):
        count += 1
    return count


def cells(sizes: Iterable[int]) -> list[tuple[int, int, int]]:
    """Every queue size with in-progress 0/100/1,000 by heartbeats 1/50/500."""
    return [(s, r, p) for s in sizes for r in (0, 100, 1000) for p in (1, 50, 500)]


async def bench(sizes: list[int], probes: int, scans: int, port: int) -> list[dict[str, Any]]:
    sync = redis.Redis(port=port, socket_timeout=TIMEOUT)
    pool = ConnectionPool(
        host="127.0.0.1", port=port, socket_timeout=TIMEOUT, connection_class=CountingConnection
    )
    client = Redis(connection_pool=pool)
    request = ProbeRequest(QUEUE, WINDOW, 60.0)
    rows: list[dict[str, Any]] = []
    try:
        for size in sizes:
            seconds, micros = cast(tuple[int, int], sync.time())
            now_ms = int(seconds) * 1000 + int(micros) // 1000
            loaded = time.perf_counter()
            fill_queue(sync, size, now_ms)
            print(f"loaded {size:,} jobs in {time.perf_counter() - loaded:.1f}s", flush=True)
            for s, running, pods in cells([size]):
                set_in_progress(sync, running)
                set_heartbeats(sync, pods, now_ms)

                async def ours() -> None:
                    [result] = await probe(client, [request], timeout=TIMEOUT)
                    assert not isinstance(result, Exception), result

                async def zcard() -> None:
                    await client.zcard(QUEUE)

                async def scan() -> None:
                    await scan_in_progress(client)

                row: dict[str, Any] = {"jobs": s, "running": running, "pods": pods}
                row["arqfleet"] = await measure(sync, ours, probes, "cmdstat_evalsha")
                row["zcard"] = await measure(sync, zcard, probes, None)
                row["scan"] = await measure(sync, scan, scans, None)
                rows.append(row)
                print_row(row)
    finally:
        await client.aclose()
        await pool.disconnect()
        sync.close()
    return rows


def print_header() -> None:
    print(
        f"{'jobs':>9}{'running':>8}{'pods':>5} | {'cmds':>5}{'RTs':>4}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'redis us':>9} | {'ZCARD p50':>9} | {'SCAN cmds':>9}{'p50 ms':>9}{'x ours':>8}"
    )


def print_row(row: dict[str, Any]) -> None:
    ours, zcard, scan = row["arqfleet"], row["zcard"], row["scan"]
    print(
        f"{row['jobs']:>9,}{row['running']:>8}{row['pods']:>5} | {ours['commands']:>5.0f}"
        f"{ours['round trips']:>4.1f}{ours['p50 ms']:>8.3f}{ours['p99 ms']:>8.3f}"
        f"{ours['redis us']:>9.0f} | {zcard['p50 ms']:>9.3f} | {scan['commands']:>9.0f}"
        f"{scan['p50 ms']:>9.2f}{scan['p50 ms'] / ours['p50 ms']:>8.1f}",
        flush=True,
    )


def verdicts(rows: list[dict[str, Any]]) -> None:
    """Flat in queue size, and at most two round trips."""
    smallest, largest = min(r["jobs"] for r in rows), max(r["jobs"] for r in rows)
    for running, pods in ((0, 1), (1000, 500)):
        at = {
            r["jobs"]: r["arqfleet"]["p50 ms"]
            for r in rows
            if (r["running"], r["pods"]) == (running, pods)
        }
        ratio = at[largest] / at[smallest]
        flat = "PASS" if ratio <= 2 else "MISS"
        print(
            f"flat in size ({running} running, {pods} pods): p50 {at[largest]:.3f} ms at "
            f"{largest:,} jobs / {at[smallest]:.3f} ms at {smallest:,} = {ratio:.2f} "
            f"(target <= 2): {flat}"
        )
    trips = max(r["arqfleet"]["round trips"] for r in rows)
    verdict = "PASS" if trips <= 2 else "MISS"
    print(f"round trips per probe, at most: {trips:.1f} (target <= 2): {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1k and 100k jobs, fewer probes")
    args = parser.parse_args(argv)
    sizes = [1_000, 100_000] if args.quick else [1_000, 100_000, 1_000_000]
    probes, scans = (50, 3) if args.quick else (200, 5)
    workdir = Path(tempfile.mkdtemp(prefix="arqfleet-probe-bench-"))
    process, port = start_redis(workdir)
    try:
        server = cast(dict[str, Any], redis.Redis(port=port, socket_timeout=TIMEOUT).info("server"))
        version = server["redis_version"]
        print(f"redis {version}, probe window {WINDOW} due ids, {probes} probes per cell")
        print_header()
        rows = asyncio.run(bench(sizes, probes, scans, port))
        verdicts(rows)
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
