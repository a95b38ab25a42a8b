"""What one queue's probe costs Redis: the operator's real probe against queue size, jobs in
progress and live pods, beside the naive probes others use, in the same cells of the same run.

    .venv/bin/python bench/probe_cost.py           # 1k, 100k, 1M jobs: 30 cells, ~3 minutes
    .venv/bin/python bench/probe_cost.py --quick   # 1k and 100k, fewer probes: < 1 minute

It starts its own redis-servers, one per queue size (loopback, free ports, no persistence, a
temp dir), and fills each one's `arq:queue` as arq's `enqueue_job` does (a ZSET member per job
id scored in epoch ms, an `arq:job:<id>` key holding the arq-serialized job), half due now and
half deferred an hour out. The cells: every size x 0/100/1,000 jobs in progress x 1/50/500 live
pods at the default window, plus 1,000 x 500 at the largest window. Per cell it marks the
oldest due jobs in progress (`arq:in-progress:<id>`, as arq's worker sets them) and writes the
pods' heartbeats with the worker's own `Heartbeat.beat()`. The sizes run side by side: each
round of probes goes to every size back to back, so load from elsewhere on a shared machine
hits every size alike (run one after the other, 1M jobs measured up to 3.5 x 1k on this VM
while a test suite started; interleaved, the same commands measure within 1.1-1.7 x).

Measured per cell, each over the same calls:

* arqfleet: `queue_probe.probe()` for one queue, the window the CRD defaults give;
* ZCARD arq:queue: KEDA's Redis scaler; O(1), but deferred and running jobs count as work;
* SCAN MATCH arq:in-progress:* COUNT 1000 to the end: counting running jobs, O(keyspace).

Columns: `cmds` = commands Redis ran per call, from `INFO commandstats` deltas (a script's own
commands are counted there too); `RTs` = round trips per call, the requests the measured
client's connection wrote (one `send_packed_command` per command or per pipeline); p50/p99 =
client-side latency; `redis us` = Redis-side time per call from the same deltas: for the probe,
the EVALSHA's `usec`, which already includes the script's inner commands (`inner us`, shown
apart, must not be added again).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, ClassVar

from arq.constants import default_queue_name, expires_extra_ms, in_progress_key_prefix
from arq.constants import job_key_prefix as arq_job_prefix
from arq.jobs import serialize_job
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError

from arqfleet.operator.models import ScaleDownPolicy, ScalingSpec, WorkerSpec
from arqfleet.operator.queue_probe import MAX_WINDOW, ProbeError, ProbeRequest, probe, window_for
from arqfleet.worker import constants as wc
from arqfleet.worker.health import Health
from arqfleet.worker.heartbeat import Heartbeat

QUEUE = default_queue_name
# Every Redis call has this socket timeout; the probe gets it as its deadline too.
TIMEOUT = 10.0
SIZES = (1_000, 100_000, 1_000_000)
QUICK_SIZES = (1_000, 100_000)
RUNNING = (0, 100, 1_000)
PODS = (1, 50, 500)
# The window a JobQueue with the CRD defaults gets (maxReplicas x maxJobs x 2 = 400 due ids).
DEFAULT_WINDOW = window_for(
    ScalingSpec.model_fields["max_replicas"].default, WorkerSpec.model_fields["max_jobs"].default
)
DUE_SOON_SECONDS = float(ScaleDownPolicy.model_fields["stabilization_seconds"].default)
# Deferred jobs start an hour out, so none comes due while a size's cells run.
DEFER_MS = 3_600_000
LOAD_BATCH = 10_000  # jobs per pipeline while loading (not measured)
# arq's in-progress key TTL with its default job_timeout (300 s + 10 s).
IN_PROGRESS_MS = 310_000
# Beat TTL = 3 intervals: far longer than a cell, so no pod expires while it is measured.
BEAT_INTERVAL = 600.0
SCAN_LEAST = 3  # full SCANs per cell at least, however long they take
SCAN_BUDGET_S = 2.0  # then more, up to the probe count, while within this budget
FLAT_TARGET = 2.0
ROUND_TRIP_TARGET = 2.0
SCRIPT_STATS = ("cmdstat_evalsha", "cmdstat_eval")


class CountingConnection(Connection):
    """Counts the requests written to each Redis (by port): one per command, or one per
    pipeline, whatever the number of commands in it."""

    writes: ClassVar[Counter[int]] = Counter()

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        CountingConnection.writes[self.port] += 1
        await super().send_packed_command(command, check_health)


@dataclass(frozen=True)
class Shape:
    """What a cell holds besides the queue: the same at every queue size."""

    running: int  # in-progress keys (capped at the due jobs of a small queue)
    pods: int  # live heartbeats
    window: int  # the probe's window
    baselines: bool  # also measure ZCARD and SCAN (they do not depend on the window)


@dataclass(frozen=True)
class Cell:
    jobs: int
    running: int
    pods: int
    window: int

    @classmethod
    def of(cls, jobs: int, shape: Shape) -> Cell:
        return cls(jobs, min(shape.running, jobs // 2), shape.pods, shape.window)


@dataclass(frozen=True)
class Cost:
    """Per call, over `samples` calls."""

    samples: int
    commands: float
    round_trips: float
    p50_ms: float
    p99_ms: float
    redis_us: float
    inner_us: float  # a script's inner commands (part of redis_us); 0 without a script


@dataclass(frozen=True)
class Row:
    cell: Cell
    arqfleet: Cost
    zcard: Cost | None
    scan: Cost | None


Call = Callable[[], Awaitable[None]]


@dataclass
class Server:
    """One redis-server per queue size, all running at once: each round of probes goes to every
    size back to back, so load from elsewhere on the machine hits every size alike."""

    jobs: int
    port: int
    process: subprocess.Popen[bytes]
    admin: Redis = field(init=False)  # loading, setup and INFO: not measured
    measured: Redis = field(init=False)  # the calls measured, through CountingConnection
    due_ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.admin = client(self.port)
        self.measured = client(self.port, CountingConnection)

    @property
    def writes(self) -> int:
        return CountingConnection.writes[self.port]

    async def close(self) -> None:
        await self.measured.aclose(close_connection_pool=True)
        await self.admin.aclose(close_connection_pool=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A redis-server without persistence, as tests/support/redis_server.py starts one."""
    binary = shutil.which("redis-server") or sys.exit("redis-server is not installed")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    argv += ["no", "--dir", str(workdir), "--logfile", str(workdir / f"redis-{port}.log")]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), port


def stop_redis(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


async def wait_ready(admin: Redis, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            await admin.ping()
            return
        except RedisConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)  # still starting: nothing to wait on but a retry


def client(port: int, connection_class: type[Connection] = Connection) -> Redis:
    pool = ConnectionPool(
        host="127.0.0.1",
        port=port,
        socket_timeout=TIMEOUT,
        socket_connect_timeout=TIMEOUT,
        connection_class=connection_class,
    )
    return Redis(connection_pool=pool)


async def redis_now_ms(admin: Redis) -> int:
    return wc.redis_time_ms(await admin.time())


def job_times(index: int, due: int, now_ms: int) -> tuple[int, int]:
    """(enqueue time, score) of job `index`: the first `due` were enqueued 1 ms apart before
    `now_ms` (oldest first), the rest at `now_ms`, deferred an hour or more."""
    if index < due:
        enqueued = now_ms - due + index
        return enqueued, enqueued
    return now_ms, now_ms + DEFER_MS + index - due


async def load_queue(admin: Redis, size: int) -> list[str]:
    """`size` jobs written as arq's `enqueue_job` writes them (PSETEX of the job, ZADD of its
    id), pipelined; returns the due ids, oldest first."""
    await admin.flushall()
    now_ms = await redis_now_ms(admin)
    ids = [uuid.uuid4().hex for _ in range(size)]  # arq's default job ids
    due = size // 2
    for start in range(0, size, LOAD_BATCH):
        pipe: Any = admin.pipeline(transaction=False)
        scores: dict[str, int] = {}
        for index in range(start, min(size, start + LOAD_BATCH)):
            enqueued, score = job_times(index, due, now_ms)
            job = serialize_job("bench_job", (index,), {}, None, enqueued)
            pipe.psetex(arq_job_prefix + ids[index], score - enqueued + expires_extra_ms, job)
            scores[ids[index]] = score
        pipe.zadd(QUEUE, scores)
        await pipe.execute()
    return ids[:due]


async def set_in_progress(admin: Redis, due_ids: Sequence[str], running: int) -> None:
    """The oldest `running` due jobs in progress, as arq's worker marks them; the previous
    cell's marks removed."""
    pipe: Any = admin.pipeline(transaction=False)
    pipe.delete(*(in_progress_key_prefix + job_id for job_id in due_ids[: max(RUNNING)]))
    for job_id in due_ids[:running]:
        pipe.psetex(in_progress_key_prefix + job_id, IN_PROGRESS_MS, b"1")
    await pipe.execute()


def in_flight_per_pod(running: int, pods: int) -> list[int]:
    """The running jobs spread over the pods, as their heartbeats would report them."""
    return [running // pods + (1 if pod < running % pods else 0) for pod in range(pods)]


def snapshot_of(in_flight: int) -> Callable[[], tuple[int, int]]:
    """A pod's (in flight, completed), as the worker's runtime reports them to its beat."""
    return lambda: (in_flight, 0)


async def set_heartbeats(admin: Redis, pods: int, running: int) -> None:
    """`pods` live heartbeats written by the worker's own code (its Lua script, from TIME)."""
    await admin.delete(wc.heartbeats_key(QUEUE), wc.heartbeat_expiry_key(QUEUE))
    health = Health(redis_stale_seconds=BEAT_INTERVAL)
    for pod, in_flight in enumerate(in_flight_per_pod(running, pods)):
        beat = Heartbeat(
            admin,
            queue_name=QUEUE,
            pod=f"bench-worker-6f9c8d7b5-{pod:05d}",
            interval=BEAT_INTERVAL,
            max_jobs=max(10, in_flight),
            health=health,
            snapshot=snapshot_of(in_flight),
        )
        await beat.beat()


async def command_stats(admin: Redis) -> dict[str, tuple[int, int]]:
    """cmdstat_<name> -> (calls, usec) since the server started."""
    stats: dict[str, dict[str, Any]] = await admin.info("commandstats")
    return {name: (int(v["calls"]), int(v["usec"])) for name, v in stats.items()}


def stat_delta(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
) -> dict[str, tuple[int, int]]:
    """What ran between two snapshots, without the admin's own first INFO."""
    delta = {}
    for name, (calls, usec) in after.items():
        old_calls, old_usec = before.get(name, (0, 0))
        delta[name] = (calls - old_calls, usec - old_usec)
    delta.pop("cmdstat_info", None)
    return {name: v for name, v in delta.items() if v[0] > 0}


def redis_side_us(delta: dict[str, tuple[int, int]]) -> tuple[int, int]:
    """(Redis-side usec, of which a script's inner commands). A script's usec includes its
    inner commands, whose usec Redis also records under their own names: adding both would
    count them twice."""
    scripts = sum(delta.get(name, (0, 0))[1] for name in SCRIPT_STATS)
    others = sum(usec for name, (_, usec) in delta.items() if name not in SCRIPT_STATS)
    return (scripts, others) if scripts else (others, 0)


def quantiles_ms(latencies: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return cuts[49], cuts[98]


async def timed_rounds(
    calls: Sequence[Call], most: int, least: int, budget_s: float
) -> list[list[float]]:
    """Latencies (ms) of every call, round by round: `least` to `most` rounds, more than
    `least` only within the budget. Every other round runs the calls in reverse order, so no
    call always runs first."""
    latencies: list[list[float]] = [[] for _ in calls]
    deadline = time.monotonic() + budget_s
    rounds = 0
    while rounds < most and (rounds < least or time.monotonic() < deadline):
        order = list(enumerate(calls))
        for index, call in order if rounds % 2 == 0 else reversed(order):
            began = time.perf_counter()
            await call()
            latencies[index].append((time.perf_counter() - began) * 1000)
        rounds += 1
    return latencies


def cost_of(delta: dict[str, tuple[int, int]], writes: int, latencies: list[float]) -> Cost:
    n = len(latencies)
    redis_us, inner_us = redis_side_us(delta)
    p50, p99 = quantiles_ms(latencies)
    commands = sum(calls for calls, _ in delta.values())
    return Cost(n, commands / n, writes / n, p50, p99, redis_us / n, inner_us / n)


async def measure(
    targets: Sequence[tuple[Server, Call]],
    most: int,
    least: int | None = None,
    budget_s: float = 0.0,
) -> list[Cost]:
    """Each target's cost per call, the targets (one per server) called round by round."""
    for _, call in targets:
        await call()  # warm: the connection open, the script loaded; not counted
    before = [(await command_stats(server.admin), server.writes) for server, _ in targets]
    calls = [call for _, call in targets]
    latencies = await timed_rounds(calls, most, most if least is None else least, budget_s)
    costs = []
    for (server, _), (stats, writes), times in zip(targets, before, latencies, strict=True):
        delta = stat_delta(stats, await command_stats(server.admin))
        costs.append(cost_of(delta, server.writes - writes, times))
    return costs


def arqfleet_probe(measured: Redis, cell: Cell) -> Call:
    request = ProbeRequest(QUEUE, cell.window, DUE_SOON_SECONDS)

    async def call() -> None:
        [result] = await probe(measured, [request], timeout=TIMEOUT)
        if isinstance(result, ProbeError):
            raise result

    return call


async def check_probe(measured: Redis, cell: Cell) -> None:
    """The probe must see the cell as loaded, or its cost would be that of another cell."""
    request = ProbeRequest(QUEUE, cell.window, DUE_SOON_SECONDS)
    [result] = await probe(measured, [request], timeout=TIMEOUT)
    if isinstance(result, ProbeError):
        raise result
    due = cell.jobs // 2
    seen = (result.stats.deferred, result.running_from_keys, len(result.stats.pods))
    expected = (cell.jobs - due, min(cell.running, cell.window), cell.pods)
    if seen != expected or result.stats.running != cell.running:
        raise RuntimeError(f"probe saw {seen}, running {result.stats.running}: not {cell}")


def zcard(measured: Redis) -> Call:
    async def call() -> None:
        await measured.zcard(QUEUE)

    return call


def scan_in_progress(measured: Redis, running: int) -> Call:
    async def call() -> None:
        found = 0
        async for _ in measured.scan_iter(match=in_progress_key_prefix + "*", count=1000):
            found += 1
        if found != running:
            raise RuntimeError(f"SCAN found {found} in-progress keys, not {running}")

    return call


async def cold_round_trips(server: Server) -> int:
    """Round trips of a probe on a Redis that has not seen the script (first probe, restart)."""
    await server.admin.script_flush()
    await server.measured.ping()  # connect first: the connection's handshake is not the probe's
    writes = server.writes
    await arqfleet_probe(server.measured, Cell(0, 0, 0, DEFAULT_WINDOW))()
    return server.writes - writes


def shapes() -> list[Shape]:
    """Every running x pods combination at the default window, then the most running and pods
    at the largest window (a fleet of maxReplicas x maxJobs >= 1,000): the probe's worst case."""
    grid = [Shape(running, pods, DEFAULT_WINDOW, True) for running in RUNNING for pods in PODS]
    return [*grid, Shape(max(RUNNING), max(PODS), MAX_WINDOW, False)]


async def prepare(server: Server, cell: Cell) -> None:
    await set_in_progress(server.admin, server.due_ids, cell.running)
    await set_heartbeats(server.admin, cell.pods, cell.running)
    await check_probe(server.measured, cell)


async def scan_costs(servers: Sequence[Server], cells: Sequence[Cell], probes: int) -> list[Cost]:
    """One server at a time: a SCAN at 1M keys takes seconds, and it is compared with the
    probe of its own cell, not across sizes."""
    costs = []
    for server, cell in zip(servers, cells, strict=True):
        scan = scan_in_progress(server.measured, cell.running)
        costs += await measure([(server, scan)], probes, SCAN_LEAST, SCAN_BUDGET_S)
    return costs


async def bench_shape(servers: Sequence[Server], shape: Shape, probes: int) -> list[Row]:
    """The shape's cell at every size: the probe and ZCARD round by round across sizes."""
    cells = [Cell.of(server.jobs, shape) for server in servers]
    for server, cell in zip(servers, cells, strict=True):
        await prepare(server, cell)
    pairs = list(zip(servers, cells, strict=True))
    ours = await measure([(s, arqfleet_probe(s.measured, c)) for s, c in pairs], probes)
    if not shape.baselines:
        return [Row(cell, cost, None, None) for cell, cost in zip(cells, ours, strict=True)]
    naive = await measure([(s, zcard(s.measured)) for s in servers], probes)
    scans = await scan_costs(servers, cells, probes)
    return [Row(*row) for row in zip(cells, ours, naive, scans, strict=True)]


def load_average() -> str:
    """Other work on the machine shows in the latencies (the sizes share it, being interleaved)."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def progress(text: str) -> None:
    sys.stdout.flush()  # keep the order of both streams when they go to one file
    print(text, file=sys.stderr, flush=True)


async def load(server: Server) -> None:
    began = time.monotonic()
    server.due_ids = await load_queue(server.admin, server.jobs)
    memory = (await server.admin.info("memory"))["used_memory_human"]
    took = time.monotonic() - began
    progress(f"loaded {server.jobs:,} jobs in {took:.1f} s, its Redis uses {memory}")


async def bench(started: Sequence[tuple[int, subprocess.Popen[bytes], int]], probes: int) -> None:
    servers = [Server(jobs, port, process) for jobs, process, port in started]
    try:
        for server in servers:
            await wait_ready(server.admin, server.process)
        version = (await servers[0].admin.info("server"))["redis_version"]
        print(f"redis {version}; probe window {DEFAULT_WINDOW} due ids (CRD defaults)")
        print(f"at start: {load_average()}")
        cold = await cold_round_trips(servers[0])
        for server in servers:
            await load(server)
        rows: list[Row] = []
        for shape in shapes():
            began = time.monotonic()
            rows += await bench_shape(servers, shape, probes)
            progress(f"  {shape}: {time.monotonic() - began:.1f} s")
        report(sorted(rows, key=lambda row: row.cell.jobs), cold, probes)
        print(f"at end: {load_average()}")
    finally:
        for server in servers:
            await server.close()


def ms(value: float) -> str:
    return f"{value:.3f}" if value < 100 else f"{value:.0f}"


def us(value: float) -> str:
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def print_table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> None:
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    for line in [header, *lines]:
        print("  ".join(text.rjust(width) for text, width in zip(line, widths, strict=True)))


def cell_columns(cell: Cell) -> list[str]:
    return [f"{cell.jobs:,}", str(cell.running), str(cell.pods), str(cell.window)]


def cost_columns(cost: Cost) -> list[str]:
    return [
        f"{cost.commands:.0f}",
        f"{cost.round_trips:.1f}",
        ms(cost.p50_ms),
        ms(cost.p99_ms),
        us(cost.redis_us),
    ]


def print_arqfleet(rows: Sequence[Row], probes: int) -> None:
    print(f"\narqfleet probe (queue_probe.probe, one queue), {probes} probes per cell")
    header = ["jobs", "running", "pods", "window", "cmds", "RTs", "p50 ms", "p99 ms"]
    header += ["redis us", "inner us"]
    lines = [
        [*cell_columns(r.cell), *cost_columns(r.arqfleet), us(r.arqfleet.inner_us)] for r in rows
    ]
    print_table(header, lines)


def print_naive(rows: Sequence[Row]) -> None:
    print("\nnaive probes, same cells (SCAN: full SCANs per cell in `n`)")
    header = ["jobs", "running", "pods", "ZCARD cmds", "RTs", "p50 ms", "p99 ms", "redis us"]
    header += ["SCAN n", "cmds", "RTs", "p50 ms", "p99 ms", "redis us", "SCAN/arqfleet p50"]
    lines = []
    for r in rows:
        if r.zcard is None or r.scan is None:
            continue
        ratio = r.scan.p50_ms / r.arqfleet.p50_ms
        naive = [*cost_columns(r.zcard), str(r.scan.samples), *cost_columns(r.scan)]
        lines.append([*cell_columns(r.cell)[:3], *naive, f"{ratio:.1f}x"])
    print_table(header, lines)


def flatness(rows: Sequence[Row]) -> list[tuple[Row, Row]]:
    """(row at the smallest size, row of the same shape at the largest size). The rows of every
    size come in the order of `shapes()` (sorting by size keeps it), so they pair by position;
    at 1,000 jobs, 1,000 running is capped to the 500 due jobs."""
    by_size: dict[int, list[Row]] = {}
    for row in rows:
        by_size.setdefault(row.cell.jobs, []).append(row)
    small, large = by_size[min(by_size)], by_size[max(by_size)]
    return list(zip(small, large, strict=True))


def print_verdicts(rows: Sequence[Row], cold: int) -> None:
    smallest = min(r.cell.jobs for r in rows)
    print(f"\nflat in queue size: arqfleet p50 at {max(r.cell.jobs for r in rows):,} jobs /")
    print(f"at {smallest:,} jobs, same running/pods/window (target <= {FLAT_TARGET:g}x):")
    ratios = []
    for low, high in flatness(rows):
        cell, big, small = high.cell, high.arqfleet.p50_ms, low.arqfleet.p50_ms
        ratios.append(big / small)
        print(
            f"  running {cell.running:>4}  pods {cell.pods:>3}  window {cell.window:>4}: "
            f"{ms(big)} / {ms(small)} ms = {big / small:.2f}x  (cmds "
            f"{low.arqfleet.commands:.0f} -> {high.arqfleet.commands:.0f})"
        )
    verdict = "PASS" if max(ratios) <= FLAT_TARGET else "MISS"
    print(f"  worst {max(ratios):.2f}x, median {statistics.median(ratios):.2f}x: {verdict}")
    trips = max(r.arqfleet.round_trips for r in rows)
    verdict = "PASS" if trips <= ROUND_TRIP_TARGET else "MISS"
    print(
        f"round trips per probe (target <= {ROUND_TRIP_TARGET:g}): at most {trips:.1f}: {verdict}"
    )
    print(f"  (a probe on a Redis without the script loaded: {cold} round trips, once)")
    for size in sorted({r.cell.jobs for r in rows}):
        scans = [r.scan.p50_ms / r.arqfleet.p50_ms for r in rows if r.scan and r.cell.jobs == size]
        print(f"SCAN / arqfleet p50 at {size:,} jobs: {min(scans):.1f}x to {max(scans):.1f}x")


def report(rows: Sequence[Row], cold: int, probes: int) -> None:
    print_arqfleet(rows, probes)
    print_naive(rows)
    print_verdicts(rows, cold)


def interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM ends the run like Ctrl-C, so the redis-server is stopped on the way out."""
    raise KeyboardInterrupt


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1k and 100k jobs, 50 probes")
    args = parser.parse_args(argv)
    args.sizes = QUICK_SIZES if args.quick else SIZES
    args.probes = 50 if args.quick else 200
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt)
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="arqfleet-probe-cost-"))
    started: list[tuple[int, subprocess.Popen[bytes], int]] = []
    status = 0
    try:
        for jobs in args.sizes:
            started.append((jobs, *start_redis(workdir)))
        asyncio.run(bench(started, args.probes))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        status = 130
    finally:
        for _, process, _ in started:
            stop_redis(process)
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"took {time.monotonic() - began:.0f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
