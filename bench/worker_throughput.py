"""Throughput of `arqfleet-worker` against bare `arq`: same app, same Redis, same moment.

    python bench/worker_throughput.py [--rounds 5] [--noop-jobs 3000] [--sleep-jobs 3000]

Starts its own redis-server on a free loopback port. Each round runs bare `arq` and
`arqfleet-worker` side by side, each on its own queue of the same Redis, with N jobs pre-loaded
into both queues and deferred to one common start instant (so enqueueing is not measured). Both
sides therefore see the same machine load at the same time, which matters on a shared 2-core
box where a sequential A-then-B comparison swings by +-25 %. A side's throughput is N / (time
its queue became empty - start instant). It prints, per workload (no-op jobs, 10 ms jobs), the
median jobs/s of each side and the median of the per-round ratios arqfleet / arq (target
>= 0.97), with the runtime's metrics and heartbeat (every 5 s) on, as in production.
Bounded: every run has a deadline and each round is a few seconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis
from arq.jobs import serialize_job

REPO_ROOT = Path(__file__).resolve().parents[1]
SETTINGS = "bench.worker_app.WorkerSettings"
SIDES = ("arq", "arqfleet")
QUEUES = ("bench:a", "bench:b")
RUN_TIMEOUT = 120.0
# With 2+ CPUs, both workers share one CPU and Redis (and this driver) get another: the two
# sides then compete for exactly the same cycles, so other load on the machine hits both alike.
PINNED = (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity")
WORKER_CPU, REDIS_CPU = 1, 0


def pin(cpu: int) -> Callable[[], None] | None:
    if not PINNED:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    binary = shutil.which("redis-server") or sys.exit("redis-server is not installed")
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(
        [*args, "--dir", str(workdir)], stdout=subprocess.DEVNULL, preexec_fn=pin(REDIS_CPU)
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    client.close()
    return proc, f"redis://127.0.0.1:{port}/0"


def start_worker(side: str, queue: str, url: str, bare_only: bool) -> subprocess.Popen[bytes]:
    if side == "arq" or bare_only:
        log_config = ["--custom-log-dict", "bench.worker_app.LOG_CONFIG"]
        command = [sys.executable, "-m", "arq", SETTINGS, *log_config]
    else:
        command = [sys.executable, "-m", "arqfleet.worker", SETTINGS]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARQFLEET_")}
    env.update(
        BENCH_QUEUE=queue,
        REDIS_URL=url,
        ARQFLEET_REDIS_URL=url,
        ARQFLEET_HTTP_PORT=str(free_port()),
        ARQFLEET_LOG_LEVEL="WARNING",
        PYTHONPATH=str(REPO_ROOT),
    )
    # stderr dropped: bare arq prints a CancelledError traceback when SIGTERM cancels its idle
    # poll (its close() re-raises it); neither side logs per job at WARNING.
    return subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stderr=subprocess.DEVNULL, preexec_fn=pin(WORKER_CPU)
    )


def preload(client: redis.Redis, queue: str, function: str, count: int, start_ms: int) -> None:
    """Write `count` jobs exactly as arq's enqueue_job does, all runnable at `start_ms`."""
    payload = serialize_job(function, (), {}, None, start_ms)
    pipe = client.pipeline(transaction=False)
    for i in range(count):
        job_id = f"{queue}-{start_ms}-{i}"
        pipe.psetex(f"arq:job:{job_id}", 3_600_000, payload)
        pipe.zadd(queue, {job_id: start_ms})
    pipe.execute()


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def one_round(
    url: str, function: str, count: int, *, swap: bool, bare_only: bool
) -> dict[str, float]:
    """jobs/s of each side draining `count` pre-loaded jobs at the same time.

    `swap` exchanges the sides' queues and start order, so that neither side keeps an
    advantage of position (started first, preloaded first, polled first).
    """
    client = redis.Redis.from_url(url)
    client.flushdb()
    sides = SIDES[::-1] if swap else SIDES
    queue_of = dict(zip(sides, QUEUES, strict=True))
    procs = {side: start_worker(side, queue_of[side], url, bare_only) for side in sides}
    try:
        deadline = time.monotonic() + 30
        # arq writes its health-check key on its first poll, on both sides: both are polling.
        while not all(client.exists(q + ":health-check") for q in QUEUES):
            if any(p.poll() is not None for p in procs.values()) or time.monotonic() > deadline:
                raise RuntimeError("a worker did not start")
            time.sleep(0.01)
        start_ms = int(time.time() * 1000) + 1000
        for queue in QUEUES:
            preload(client, queue, function, count, start_ms)
        finished: dict[str, float] = {}
        deadline = time.monotonic() + RUN_TIMEOUT
        while len(finished) < len(SIDES):
            if time.monotonic() > deadline:
                raise RuntimeError(f"not finished in {RUN_TIMEOUT}s: {sorted(finished)}")
            pipe = client.pipeline(transaction=False)
            for side in sides:
                pipe.zcard(queue_of[side])
            now = time.time()
            for side, left in zip(sides, pipe.execute(), strict=True):
                if not left and side not in finished:
                    finished[side] = now
            time.sleep(0.005)
        return {side: count / (t - start_ms / 1000) for side, t in finished.items()}
    finally:
        for proc in procs.values():
            stop(proc)
        client.close()


def instrumentation_cost_us(calls: int = 50_000) -> float:
    """Extra time per job of the runtime's job wrapper (metrics), measured in-process, in us.

    Free of the machine noise that even paired runs show, this bounds what the metrics can
    cost: divided by a bare job's time (1e6 / bare jobs/s) it is the fraction of throughput.
    """
    import asyncio

    from arq.worker import func

    from arqfleet.worker.instrument import Instrument, JobCounts
    from arqfleet.worker.metrics import WorkerMetrics

    async def noop(ctx: dict[str, object]) -> None:
        return None

    metrics = WorkerMetrics(["noop"], in_progress=lambda: 0.0, draining=lambda: 0.0)
    wrapped = Instrument(metrics, None, JobCounts()).wrap(func(noop, name="noop")).coroutine

    async def per_call(fn: Callable[[dict[str, object]], Awaitable[None]]) -> float:
        ctx: dict[str, object] = {"score": time.time() * 1000, "job_id": "b", "job_try": 1}
        began = time.perf_counter()
        for _ in range(calls):
            await fn(ctx)
        return (time.perf_counter() - began) / calls * 1e6

    async def measure() -> float:
        return min([await per_call(wrapped) - await per_call(noop) for _ in range(3)])

    return asyncio.run(measure())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="arqfleet-worker vs bare arq throughput")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--noop-jobs", type=int, default=3000)
    parser.add_argument("--sleep-jobs", type=int, default=3000)
    parser.add_argument(
        "--aa",
        action="store_true",
        help="calibration: bare arq on both sides, to show the method's own noise",
    )
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="arqfleet-bench-"))
    redis_proc, url = start_redis(workdir)
    noop_bare = 1.0
    if PINNED:
        os.sched_setaffinity(0, {REDIS_CPU})
        print(
            f"workers pinned to CPU {WORKER_CPU}, redis-server and this driver to CPU {REDIS_CPU}"
        )
    if args.aa:
        print("A/A calibration: both sides run bare arq")
    try:
        print(
            f"{'workload':<11} {'arq jobs/s':>10} {'arqfleet jobs/s':>15} {'ratio':>6}  per round"
        )
        for function, count in (("noop", args.noop_jobs), ("sleep_10ms", args.sleep_jobs)):
            rounds = [
                one_round(url, function, count, swap=i % 2 == 1, bare_only=args.aa)
                for i in range(args.rounds)
            ]
            ratios = [r["arqfleet"] / r["arq"] for r in rounds]
            bare = statistics.median(r["arq"] for r in rounds)
            fleet = statistics.median(r["arqfleet"] for r in rounds)
            detail = " ".join(f"{x:.3f}" for x in ratios)
            ratio = statistics.median(ratios)
            print(f"{function:<11} {bare:>10.0f} {fleet:>15.0f} {ratio:>6.3f}  {detail}")
            if function == "noop":
                noop_bare = bare
        cost = instrumentation_cost_us()
        share = cost / (1e6 / noop_bare)
        print(
            f"job wrapper: {cost:.1f} us/job = {share:.2%} of a bare no-op job at "
            f"{noop_bare:.0f} jobs/s, so metrics alone allow a ratio of {1 - share:.3f}"
        )
    finally:
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
