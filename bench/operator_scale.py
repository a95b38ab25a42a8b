"""The operator at 1,000 JobQueues: its CPU, memory, loop lag and API traffic, against 100.

    .venv/bin/python bench/operator_scale.py                    # 100, then 1,000; ~15 min
    .venv/bin/python bench/operator_scale.py --queues 300 --seconds 60
    .venv/bin/python bench/operator_scale.py --profile          # py-spy even if all targets pass
    .venv/bin/python bench/operator_scale.py --queues 200 --tracemalloc  # memory by source line

What runs: the local control plane (etcd, kube-apiserver, kube-controller-manager; no scheduler
and no node, so worker pods stay Pending: nothing runs a job), one redis-server, and the real
`arqfleet-operator` as a process under the shipped cluster-wide RBAC, with the production
defaults for the settings the test harness shortens (ARQFLEET_QUEUE_STATUS_SECONDS above all).

The mix, per N queues, all at pollSeconds 5, spread over Redis databases 0-9 of that one
server (10 Redis URLs, so 10 probe pipelines), one namespace per kind so that the audit log
tells the kinds apart:

- idle (95 %): empty queue, minReplicas 0;
- busy (4 %): a backlog of 10-40 arq jobs (`enqueue_job`) that nobody consumes: a queue of
  steady size, 1-4 replicas;
- bursting (1 %): empty until the window's second half, when 100 jobs land in each; they are
  "drained" (deleted, as if workers had run them) a sixth of the window later.

Every queue's "no cron jobs" marker is published in Redis first, as its workers would have
done on their first run: otherwise every new queue at zero starts a worker to learn the
schedule, and with no node those 1,000 pods never start and never publish it.

Then: create the JobQueues, start the operator, wait until every queue has its Deployment at
the desired replicas and a status, and no operator write has touched an idle or bursting queue
for 15 s; then measure for --seconds: the first half quiet, the second with the bursts.
The operator's /metrics is scraped every 30 s meanwhile, as the chart's ServiceMonitor does.

Measured: the operator's CPU-seconds (utime + stime from /proc, so load elsewhere on the
machine barely changes it) over the wall time; its RSS (max VmRSS sampled every second, and
VmHWM, the peak over its life, which includes the start-up); the loop lag from the operator's
`arqfleet_scaling_loop_lag_seconds` histogram (probe start minus its scheduled time) over the
window; the kube-apiserver's `apiserver_request_total` deltas by verb and resource (every
client: operator, controller-manager, this script's two scrapes) per phase; and the
operator's own requests from the apiserver's audit log, per kind of queue and phase.

The run first measures N/10 queues (the baseline), then adds the rest, restarts the operator
and measures N: it prints the figures of both and N vs N/10 ratios. When a target is missed
(or with --profile), py-spy records the operator for 30 s after the last window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import redis
from arq.connections import RedisSettings, create_pool
from arq.constants import job_key_prefix

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "hack"), str(REPO / "operator"), str(REPO / "worker")]

from tests.support.kube import kubectl  # noqa: E402
from tests.support.operator_process import (  # noqa: E402
    OPERATOR_USER,
    OperatorProcess,
    bind_operator_rbac,
)
from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.waiting import WaitTimeout, wait_for  # noqa: E402

from arqfleet.worker.constants import (  # noqa: E402
    CRON_KEY_TTL_NO_CRON_MS,
    cron_next_key,
    encode_cron_next,
)
from bench.operator_scale_measure import (  # noqa: E402
    METRIC_WRITE_VERBS,
    AuditTail,
    Call,
    apiserver_requests,
    bucket_delta,
    buckets,
    cpu_seconds,
    memory_bytes,
    quantile,
    samples,
    share_within,
    total,
)
from bench.operator_scale_memory import ENV as MEMORY_ENV  # noqa: E402
from bench.operator_scale_memory import MODE_ENV as MEMORY_MODE_ENV  # noqa: E402
from bench.operator_scale_memory import sitecustomize_dir  # noqa: E402
from bench.operator_scale_profile import record, summarize  # noqa: E402
from localcluster import ControlPlane, is_running  # noqa: E402

KINDS = ("idle", "busy", "burst")
DATABASES = 10
BURST_JOBS = 100
MAX_JOBS = 10  # the CRD default: replicas = ceil(jobs / 10)
QUIET_SECONDS = 15.0  # settled: this long without an operator write to an idle/bursting queue
# ... and the apiserver's writes down to the controller-manager's own background (its lease:
# 0.1 writes/s on an idle cluster).
APISERVER_QUIET_RATE = 0.5
TABLE_MIN_RATE = 0.05  # requests/s; rarer rows (informers re-watching) are summed in one
SCRAPE_EVERY = 30.0  # the chart's ServiceMonitor interval
SAMPLE_EVERY = 1.0  # RSS sampling
CREATE_CHUNK = 100  # JobQueues per `kubectl create` (kubectl calls time out after 60 s)
REDIS_TIMEOUT = 10.0
ENQUEUE_TIMEOUT = 120.0
PROFILE_SECONDS = 30
MIB = 1024 * 1024

TARGET_CORES = 0.5
TARGET_RSS_MIB = 200.0
TARGET_LAG_SECONDS = 1.0  # a bucket bound of the lag histogram: its share is exact

# The test harness shortens these for speed; a benchmark of production load uses the defaults.
PRODUCTION_ENV = {
    "ARQFLEET_QUEUE_STATUS_SECONDS": "15",
    "ARQFLEET_DISCOVERY_CACHE_SECONDS": "60",
    "ARQFLEET_SECRET_RECHECK_SECONDS": "30",
}
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


# -- the mix -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Queue:
    kind: str
    index: int  # within its kind

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.index:04d}"

    @property
    def namespace(self) -> str:
        return namespace_of(self.kind)

    @property
    def database(self) -> int:
        return self.index % DATABASES

    @property
    def arq_queue(self) -> str:
        # One key per queue: up to a hundred queues share each database.
        return f"arq:queue:{self.name}"

    @property
    def backlog(self) -> int:
        """Jobs waiting in a busy queue: 10-40, so 1-4 replicas."""
        return 10 + 5 * (self.index % 7) if self.kind == "busy" else 0


def namespace_of(kind: str) -> str:
    return f"scale-{kind}"


@dataclass(frozen=True)
class Mix:
    idle: int
    busy: int
    burst: int

    @classmethod
    def of(cls, total: int) -> Mix:
        busy, burst = round(total * 0.04), max(1, round(total * 0.01))
        return cls(total - busy - burst, busy, burst)

    @property
    def total(self) -> int:
        return self.idle + self.busy + self.burst

    def count(self, kind: str) -> int:
        return int(getattr(self, kind))

    def queues(self, kind: str | None = None) -> list[Queue]:
        kinds = KINDS if kind is None else (kind,)
        return [Queue(k, i) for k in kinds for i in range(self.count(k))]

    def describe(self) -> str:
        return f"{self.total} JobQueues ({self.idle} idle, {self.busy} busy, {self.burst} bursting)"


def jobqueue_body(queue: Queue, redis_port: int, poll: int) -> dict[str, Any]:
    scaling: dict[str, Any] = {"pollSeconds": poll}
    if queue.kind == "burst":
        # A bursty queue's owner shortens the scale-down window, so the window sees it.
        scaling["scaleDown"] = {"stabilizationSeconds": 30}
    return {
        "apiVersion": "arqfleet.io/v1alpha1",
        "kind": "JobQueue",
        "metadata": {"name": queue.name, "namespace": queue.namespace},
        "spec": {
            "redis": {"url": f"redis://127.0.0.1:{redis_port}/{queue.database}"},
            "queueName": queue.arq_queue,
            "worker": {"image": "local/none:0", "settings": "bench.worker_app.WorkerSettings"},
            "scaling": scaling,
        },
    }


# -- the stack: control plane, Redis, operator ---------------------------------------------


@dataclass
class Stack:
    plane: ControlPlane = field(default_factory=lambda: ControlPlane(with_controller_manager=True))
    redis: RedisServer = field(default_factory=RedisServer)
    kubeconfig: Path | None = None
    operator: OperatorProcess | None = None
    audit: AuditTail | None = None
    pids: dict[str, int] = field(default_factory=dict)  # everything started, for the check

    def process_pids(self) -> dict[str, int]:
        """Processes whose CPU is reported, by name."""
        found = {p.name: p.popen.pid for p in self.plane.processes}
        if self.redis.process is not None:
            found["redis-server"] = self.redis.process.pid
        if self.operator is not None and self.operator.popen is not None:
            found["operator"] = self.operator.popen.pid
        return found


def kubectl_until_ok(stack: Stack, *args: str, timeout: float = 90) -> None:
    """kubectl, again until it succeeds: a fresh apiserver sometimes answers a first call
    about a just-created CRD with an error (seen once: `wait` exiting 1 at once)."""
    errors = [""]

    def succeeded() -> bool:
        done = kubectl(stack.plane, *args, check=False)
        errors[0] = done.stderr.strip()
        return done.returncode == 0

    try:
        wait_for(succeeded, timeout=timeout, interval=1.0, what=f"kubectl {' '.join(args)}")
    except WaitTimeout as error:
        raise WaitTimeout(f"{error}: {errors[0]}") from error


def bring_up(stack: Stack) -> None:
    stack.plane.start()
    kubectl_until_ok(stack, "apply", "--server-side", "-f", str(REPO / "crds"))
    kubectl_until_ok(
        stack, "wait", "--for=condition=Established", "--timeout=60s", "crd/jobqueues.arqfleet.io"
    )
    namespaces = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace_of(kind), "labels": RESTRICTED},
        }
        for kind in KINDS
    ]
    body = {"apiVersion": "v1", "kind": "List", "items": namespaces}
    kubectl(stack.plane, "apply", "-f", "-", stdin=json.dumps(body))
    stack.redis.start()
    stack.kubeconfig = bind_operator_rbac(stack.plane)
    stack.audit = AuditTail(stack.plane.audit_log, OPERATOR_USER)


def start_operator(
    stack: Stack, memory_report: Path | None = None, memory_mode: str = "census"
) -> OperatorProcess:
    """The operator, with the memory report hook inside when `memory_report` is given."""
    assert stack.kubeconfig is not None
    env = dict(PRODUCTION_ENV)
    if memory_report is not None:
        hook = sitecustomize_dir(memory_report.parent / "hook")
        env |= {
            "PYTHONPATH": str(hook),
            MEMORY_ENV: str(memory_report),
            MEMORY_MODE_ENV: memory_mode,
        }
    operator = OperatorProcess(stack.plane, stack.kubeconfig, env=env)
    stack.operator = operator
    operator.start()
    assert operator.popen is not None
    stack.pids[f"operator-{operator.popen.pid}"] = operator.popen.pid
    return operator


def stop_operator(stack: Stack) -> None:
    operator, stack.operator = stack.operator, None
    if operator is not None:
        code = operator.stop()
        if code != 0:
            print(f"operator exited {code}; log: {operator.log_path}", file=sys.stderr)


def tear_down(stack: Stack) -> list[str]:
    """Stop everything (each step even if one before it fails); return what is still alive."""
    # Operators are recorded by pid as they start (there may have been two).
    started = stack.process_pids().items()
    stack.pids.update({name: pid for name, pid in started if name != "operator"})
    steps: list[Callable[[], object]] = [
        lambda: stop_operator(stack),
        stack.redis.cleanup,
        stack.plane.cleanup,
    ]
    for step in steps:
        try:
            step()
        except Exception as error:  # one part failing to stop must not leave the others running
            print(f"teardown: {error!r}", file=sys.stderr)
    return [f"{name} (pid {pid})" for name, pid in stack.pids.items() if is_running(pid)]


# -- Redis: backlogs, bursts, cron markers -------------------------------------------------


def by_database(queues: Iterable[Queue]) -> dict[int, list[Queue]]:
    grouped: dict[int, list[Queue]] = defaultdict(list)
    for queue in queues:
        grouped[queue.database].append(queue)
    return grouped


def redis_client(port: int, database: int) -> redis.Redis:
    return redis.Redis(
        port=port, db=database, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
    )


def publish_no_cron(port: int, queues: Iterable[Queue]) -> None:
    """Each queue's "no cron jobs" marker, as a worker writes it after its first start."""
    marker = encode_cron_next(None)
    for database, group in by_database(queues).items():
        client = redis_client(port, database)
        try:
            pipe = client.pipeline(transaction=False)
            for queue in group:
                pipe.set(cron_next_key(queue.arq_queue), marker, px=CRON_KEY_TTL_NO_CRON_MS)
            pipe.execute()
        finally:
            client.close()


def enqueue(port: int, jobs: dict[Queue, int], tag: str) -> None:
    """`jobs[queue]` no-op arq jobs into each queue, with arq's own `enqueue_job`."""

    async def run() -> None:
        async with asyncio.timeout(ENQUEUE_TIMEOUT):
            for database, group in by_database(jobs).items():
                settings = RedisSettings(port=port, database=database, conn_timeout=5)
                pool = await create_pool(settings)
                try:
                    for queue in group:
                        for k in range(jobs[queue]):
                            job_id = f"{queue.name}-{tag}-{k}"
                            await pool.enqueue_job(
                                "noop", _queue_name=queue.arq_queue, _job_id=job_id
                            )
                finally:
                    await pool.aclose()

    asyncio.run(run())


def drain(port: int, queues: Iterable[Queue], tag: str, jobs: int) -> None:
    """Remove a burst's jobs, as workers finishing them would (queue entry and job key)."""
    for database, group in by_database(queues).items():
        client = redis_client(port, database)
        try:
            pipe = client.pipeline(transaction=False)
            for queue in group:
                pipe.delete(queue.arq_queue)
                pipe.delete(*(f"{job_key_prefix}{queue.name}-{tag}-{k}" for k in range(jobs)))
            pipe.execute()
        finally:
            client.close()


# -- creating and settling -----------------------------------------------------------------


def chunks(items: list[Queue], size: int) -> Iterator[list[Queue]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def create_jobqueues(stack: Stack, queues: list[Queue], poll: int) -> None:
    for chunk in chunks(queues, CREATE_CHUNK):
        items = [jobqueue_body(q, stack.redis.port, poll) for q in chunk]
        body = {"apiVersion": "v1", "kind": "List", "items": items}
        kubectl(stack.plane, "create", "-f", "-", stdin=json.dumps(body))


def table(stack: Stack, *args: str) -> list[list[str]]:
    out = kubectl(stack.plane, "get", *args, "--all-namespaces", "--no-headers").stdout
    return [line.split() for line in out.splitlines() if line.strip()]


def deployment_rows(stack: Stack) -> dict[tuple[str, str], list[str]]:
    """Our Deployments: spec.replicas, and what the deployment controller has caught up on."""
    columns = "NS:.metadata.namespace,NAME:.metadata.name,R:.spec.replicas,"
    columns += "GEN:.metadata.generation,OBS:.status.observedGeneration,CREATED:.status.replicas"
    selector = "app.kubernetes.io/managed-by=arqfleet"
    rows = table(stack, "deployments", "-l", selector, "-o", f"custom-columns={columns}")
    return {(r[0], r[1]): r[2:] for r in rows}


def convergence(stack: Stack, mix: Mix) -> str:
    """What is not settled yet, from the API ("" when every queue is)."""
    columns = "NS:.metadata.namespace,NAME:.metadata.name,GEN:.metadata.generation,"
    columns += "OBS:.status.observedGeneration,DESIRED:.status.desiredReplicas"
    queues = {
        (r[0], r[1]): r[2:] for r in table(stack, "jobqueues", "-o", f"custom-columns={columns}")
    }
    deployments = deployment_rows(stack)
    pending = Counter[str]()
    for queue in mix.queues():
        generation, observed, desired = queues.get((queue.namespace, queue.name), ["?"] * 3)
        replicas, d_generation, d_observed, created = deployments.get(
            (queue.namespace, f"{queue.name}-worker"), ["?"] * 4
        )
        if observed != generation or desired in ("?", "<none>"):
            pending["no status yet"] += 1
        elif replicas != desired:
            pending["replicas not at desired"] += 1
        elif (queue.kind == "busy") != (desired != "0"):
            pending[f"{queue.kind} at {desired} replicas"] += 1
        elif d_observed != d_generation or created.replace("<none>", "0") != replicas:
            # The controller-manager has not caught up yet (ReplicaSet, pods, status): its
            # catching up would count in the window as the operator's load on the apiserver.
            pending["Deployment not synced by the controller-manager"] += 1
    return ", ".join(f"{n} {what}" for what, n in pending.items())


def last_settling_write(calls: list[Call]) -> float:
    """When the operator last wrote anything but the rate-limited status of a busy queue."""
    busy = namespace_of("busy")
    times = [
        c.at
        for c in calls
        if c.write and not (c.namespace == busy and c.resource == "jobqueues/status")
    ]
    return max(times, default=0.0)


def background_writes(counts: Counter[tuple[str, str]]) -> int:
    """Writes that a settled cluster still makes, but the busy queues' rate-limited status
    writes. Writes only: the settle checks' own kubectl reads would count otherwise."""
    return sum(
        n
        for (verb, resource), n in counts.items()
        if verb in METRIC_WRITE_VERBS and (verb, resource) != ("APPLY", "jobqueues/status")
    )


@dataclass
class Settling:
    """The checks of `settle`, with what still moves (for the timeout's message)."""

    stack: Stack
    mix: Mix
    why: str = "not looked yet"
    sample: tuple[float, int] | None = None  # (monotonic, background writes) for the rate
    rate: str = "not measured yet"

    def operator_quiet(self) -> bool:
        assert self.stack.audit is not None
        quiet = time.time() - last_settling_write(self.stack.audit.read())
        self.why = f"last operator write to an idle or bursting queue {quiet:.0f} s ago"
        return quiet >= QUIET_SECONDS

    def apiserver_quiet(self) -> bool:
        """At most APISERVER_QUIET_RATE background writes/s over QUIET_SECONDS or more."""
        now, count = time.monotonic(), background_writes(apiserver_requests(self.stack.plane))
        self.why = f"apiserver background writes: {self.rate}"
        if self.sample is None or now - self.sample[0] < QUIET_SECONDS:
            self.sample = self.sample or (now, count)
            return False
        rate = (count - self.sample[1]) / (now - self.sample[0])
        self.sample = (now, count)
        self.rate = f"{rate:.2f}/s"
        return rate <= APISERVER_QUIET_RATE

    def __call__(self) -> bool:
        self.why = convergence(self.stack, self.mix)
        if self.why:
            self.sample = None
            return False
        return self.operator_quiet() and self.apiserver_quiet()


def settle(stack: Stack, mix: Mix, timeout: float) -> float:
    """Wait until every queue has converged and the cluster has gone quiet; seconds taken."""
    began = time.monotonic()
    settling = Settling(stack, mix)
    try:
        wait_for(settling, timeout=timeout, interval=2.0, what="every queue settled")
    except WaitTimeout as error:
        raise WaitTimeout(f"{error}; still: {settling.why}") from error
    return time.monotonic() - began


# -- the measurement window ----------------------------------------------------------------


@dataclass
class Mark:
    """One point of the window: clocks, CPU-seconds by process and the apiserver's counters."""

    mono: float
    wall: float
    cpu: dict[str, float]
    requests: Counter[tuple[str, str]]


def mark(stack: Stack) -> Mark:
    cpu = {name: cpu_seconds(pid) for name, pid in stack.process_pids().items()}
    mono, wall = time.monotonic(), time.time()
    return Mark(mono, wall, cpu, apiserver_requests(stack.plane))


@dataclass
class Window:
    start: Mark
    mid: Mark
    end: Mark
    metrics_before: str
    metrics_after: str
    rss: list[int]  # VmRSS, every SAMPLE_EVERY seconds
    rss_peak: int  # VmHWM at the end: the peak over the operator's life
    scrapes: list[tuple[float, int]]  # (seconds, bytes) of each /metrics scrape in the window
    calls: list[Call]


@dataclass
class Recorder:
    """Fires the window's events on time and samples RSS in between."""

    stack: Stack
    mix: Mix
    seconds: float
    marks: dict[str, Mark] = field(default_factory=dict)
    scrapes: list[tuple[float, int]] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)

    def events(self) -> list[tuple[float, str]]:
        half = self.seconds / 2
        scrapes = [(t, "scrape") for t in _range(SCRAPE_EVERY, self.seconds, SCRAPE_EVERY)]
        return sorted([(half, "mid"), (half + self.seconds / 6, "drain"), *scrapes])

    def fire(self, event: str) -> None:
        bursting = self.mix.queues("burst")
        if event == "mid":
            self.marks["mid"] = mark(self.stack)
            enqueue(self.stack.redis.port, dict.fromkeys(bursting, BURST_JOBS), "burst")
        elif event == "drain":
            drain(self.stack.redis.port, bursting, "burst", BURST_JOBS)
        elif event == "scrape":
            self.scrape()

    def scrape(self) -> str:
        operator = self.stack.operator
        assert operator is not None
        began = time.monotonic()
        text = operator.metrics()
        self.scrapes.append((time.monotonic() - began, len(text)))
        return text

    def sample(self) -> int:
        operator = self.stack.operator
        assert operator is not None
        assert operator.popen is not None
        rss, peak = memory_bytes(operator.popen.pid)
        self.rss.append(rss)
        return peak

    def run(self) -> Window:
        assert self.stack.audit is not None
        before = self.scrape()
        start = mark(self.stack)
        pending = self.events()
        next_sample = start.mono
        while time.monotonic() < start.mono + self.seconds:
            self.sample()
            while pending and start.mono + pending[0][0] <= time.monotonic():
                self.fire(pending.pop(0)[1])
            next_sample += SAMPLE_EVERY
            # A sampling cadence, not a wait for something to happen.
            time.sleep(max(0.0, min(next_sample, start.mono + self.seconds) - time.monotonic()))
        end = mark(self.stack)
        peak = self.sample()
        after = self.scrape()
        calls = self.stack.audit.between(start.wall, end.wall)
        return Window(
            start, self.marks["mid"], end, before, after, self.rss, peak, self.scrapes, calls
        )


def _range(start: float, stop: float, step: float) -> list[float]:
    return [start + k * step for k in range(max(0, math.ceil((stop - start) / step)))]


# -- results -------------------------------------------------------------------------------


@dataclass
class Result:
    mix: Mix
    poll: int
    window: Window

    @property
    def seconds(self) -> float:
        return self.window.end.mono - self.window.start.mono

    def cores(self, process: str = "operator") -> float:
        w = self.window
        return (w.end.cpu.get(process, 0.0) - w.start.cpu.get(process, 0.0)) / self.seconds

    def lag(self) -> dict[float, float]:
        name = "arqfleet_scaling_loop_lag_seconds"
        w = self.window
        return bucket_delta(buckets(w.metrics_before, name), buckets(w.metrics_after, name))

    def probe_rounds(self) -> dict[float, float]:
        name = "arqfleet_probe_duration_seconds"
        w = self.window
        return bucket_delta(buckets(w.metrics_before, name), buckets(w.metrics_after, name))

    def counter_delta(self, name: str) -> float:
        return total(self.window.metrics_after, name) - total(self.window.metrics_before, name)

    def requests(self, first: Mark, last: Mark) -> Counter[tuple[str, str]]:
        delta = Counter(last.requests)
        delta.subtract(first.requests)
        return +delta

    def api_rate(self, writes_only: bool = False) -> float:
        w = self.window
        counts = self.requests(w.start, w.end)
        picked = [
            n for (verb, _), n in counts.items() if not writes_only or verb in METRIC_WRITE_VERBS
        ]
        return sum(picked) / self.seconds

    def operator_calls(self, kind: str | None, phase: str, writes: bool = True) -> list[Call]:
        w = self.window
        start, end = (w.start, w.mid) if phase == "quiet" else (w.mid, w.end)
        return [
            c
            for c in w.calls
            if start.wall <= c.at < end.wall
            and (kind is None or c.namespace == namespace_of(kind))
            and (c.write or not writes)
        ]

    def writes_per_poll(self, kind: str, phase: str = "quiet") -> float:
        w = self.window
        start, end = (w.start, w.mid) if phase == "quiet" else (w.mid, w.end)
        polls = self.mix.count(kind) * (end.wall - start.wall) / self.poll
        return len(self.operator_calls(kind, phase)) / polls if polls else math.nan

    def operator_rate(self, writes: bool = False) -> float:
        calls = [c for c in self.window.calls if c.write or not writes]
        return len(calls) / self.seconds


def mib(value: float) -> str:
    return f"{value / MIB:.1f} MiB"


def report(result: Result, settled_in: float) -> None:
    w, seconds, cores = result.window, result.seconds, result.cores()
    print(f"\n== {result.mix.describe()}, pollSeconds {result.poll}, {DATABASES} Redis databases")
    drained = f"drained {seconds / 6:.0f} s later"
    print(f"settled in {settled_in:.0f} s; window {seconds:.0f} s: a quiet half, then "
          f"{BURST_JOBS} jobs into each bursting queue, {drained}")  # fmt: skip
    per_queue = cores / result.mix.total * 1000
    print(f"operator CPU   {cores * seconds:.1f} CPU-s / {seconds:.0f} s = {cores:.3f} cores "
          f"({per_queue:.3f} millicores per queue)")  # fmt: skip
    print(f"operator RSS   {mib(w.rss[0])} at the start of the window, {mib(w.rss[-1])} at "
          f"its end, max {mib(max(w.rss))}; peak over its life (VmHWM, start-up included) "
          f"{mib(w.rss_peak)}")  # fmt: skip
    report_loop(result)
    others = ", ".join(
        f"{name} {result.cores(name):.2f}"
        for name in ("kube-apiserver", "etcd", "kube-controller-manager", "redis-server")
    )
    print(f"others (cores) {others}")
    longest, largest = max(s for s, _ in w.scrapes), max(b for _, b in w.scrapes)
    print(f"operator /metrics scrapes: {len(w.scrapes)}, {longest:.2f} s max, "
          f"{largest / 1e6:.2f} MB")  # fmt: skip
    report_apiserver(result)
    report_operator_calls(result)


def report_loop(result: Result) -> None:
    lag, rounds = result.lag(), result.probe_rounds()
    p50, p95, p99 = (quantile(lag, q) for q in (0.5, 0.95, 0.99))
    within = share_within(lag, TARGET_LAG_SECONDS)
    print(f"loop lag       p50 {p50:.3f} s, p95 {p95:.3f} s, p99 {p99:.3f} s; "
          f"{within:.2%} <= {TARGET_LAG_SECONDS:g} s")  # fmt: skip
    probes = lag.get(math.inf, 0.0) / result.seconds
    expected = result.mix.total / result.poll
    per_round = rounds.get(math.inf, 0.0) / result.seconds
    round_p95 = quantile(rounds, 0.95) * 1000
    print(f"probes         {probes:.1f} queue probes/s (schedule: {expected:.1f}/s) in "
          f"{per_round:.1f} rounds/s; round p95 {round_p95:.1f} ms")  # fmt: skip
    errors = result.counter_delta("arqfleet_scaling_errors_total")
    errors += result.counter_delta("arqfleet_reconcile_errors_total")
    scaled: dict[str, float] = defaultdict(float)
    for text, sign in ((result.window.metrics_after, 1), (result.window.metrics_before, -1)):
        for labels, value in samples(text, "arqfleet_scale_events_total"):
            scaled[labels["namespace"]] += sign * value
    moves = ", ".join(f"{ns} {n:.0f}" for ns, n in sorted(scaled.items()) if n) or "none"
    print(f"scale events   {moves}; scaling/reconcile errors {errors:.0f}")


def report_apiserver(result: Result) -> None:
    w = result.window
    quiet, burst = result.requests(w.start, w.mid), result.requests(w.mid, w.end)
    quiet_s, burst_s = w.mid.mono - w.start.mono, w.end.mono - w.mid.mono
    print("apiserver requests/s by verb and resource (all clients; * = write):")
    print(f"  {'verb':<8}{'resource':<34}{'quiet':>8}{'bursts':>8}")
    keys = sorted(set(quiet) | set(burst), key=lambda k: -(quiet[k] + burst[k]))
    rest = [0.0, 0.0, 0]
    for verb, resource in keys:
        q, b = quiet[verb, resource] / quiet_s, burst[verb, resource] / burst_s
        if max(q, b) < TABLE_MIN_RATE:
            rest = [rest[0] + q, rest[1] + b, int(rest[2]) + 1]
            continue
        star = "*" if verb in METRIC_WRITE_VERBS else " "
        print(f" {star}{verb:<8}{resource:<34}{q:8.3f}{b:8.3f}")
    print(f"  {f'{rest[2]} rows under {TABLE_MIN_RATE}/s':<42}{rest[0]:8.3f}{rest[1]:8.3f}")
    for label, counts, span in (("quiet", quiet, quiet_s), ("bursts", burst, burst_s)):
        writes = sum(n for (verb, _), n in counts.items() if verb in METRIC_WRITE_VERBS)
        rate = sum(counts.values()) / span
        print(f"  {label}: {rate:.2f} requests/s, {writes / span:.3f} writes/s")


def describe_calls(calls: list[Call]) -> str:
    counts = Counter(f"{c.verb} {c.resource}" for c in calls)
    return ", ".join(f"{what} x{n}" for what, n in counts.most_common()) or "-"


def report_operator_calls(result: Result) -> None:
    print("operator's writes (audit log) by kind of queue and phase:")
    print(f"  {'kind':<7}{'phase':<8}{'writes':>7}{'per poll':>10}  what")
    for kind in KINDS:
        for phase in ("quiet", "bursts"):
            calls = result.operator_calls(kind, phase)
            per_poll = result.writes_per_poll(kind, phase)
            what = describe_calls(calls)
            print(f"  {kind:<7}{phase:<8}{len(calls):>7}{per_poll:>10.3f}  {what}")
    reads = [c for c in result.window.calls if not c.write]
    print(f"  reads over the window: {describe_calls(reads)}")
    rate, writes = result.operator_rate(), result.operator_rate(writes=True)
    print(f"  operator requests/s: {rate:.3f}, writes/s {writes:.3f}")


# -- targets and ratios --------------------------------------------------------------------


def verdicts(result: Result) -> list[tuple[str, bool]]:
    lag = result.lag()
    rows = [
        (f"CPU {result.cores():.3f} cores <= {TARGET_CORES}", result.cores() <= TARGET_CORES),
        (
            f"RSS peak {mib(result.window.rss_peak)} <= {TARGET_RSS_MIB:.0f} MiB",
            result.window.rss_peak <= TARGET_RSS_MIB * MIB,
        ),
        (
            f"loop lag p95 {quantile(lag, 0.95):.3f} s <= {TARGET_LAG_SECONDS:g} s",
            share_within(lag, TARGET_LAG_SECONDS) >= 0.95,
        ),
    ]
    for kind in ("idle", "busy"):
        per_poll = result.writes_per_poll(kind)
        rows.append((f"steady {kind} queues: {per_poll:.3f} writes per poll == 0", per_poll == 0))
    return rows


def print_verdicts(result: Result) -> bool:
    print(f"\ntargets at {result.mix.total} queues:")
    rows = verdicts(result)
    for text, ok in rows:
        print(f"  {'PASS' if ok else 'MISS'}  {text}")
    return all(ok for _, ok in rows)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def print_ratios(big: Result, small: Result) -> None:
    n, m = big.mix.total, small.mix.total
    print(f"\n{n} vs {m} queues ({ratio(n, m)} the queues):")
    rows = [
        ("operator cores", big.cores(), small.cores(), "{:.3f}"),
        ("cores per queue (millicores)", big.cores() / n * 1e3, small.cores() / m * 1e3, "{:.3f}"),
        (
            "RSS max in window (MiB)",
            max(big.window.rss) / MIB,
            max(small.window.rss) / MIB,
            "{:.1f}",
        ),
        ("RSS peak VmHWM (MiB)", big.window.rss_peak / MIB, small.window.rss_peak / MIB, "{:.1f}"),
        ("apiserver requests/s (all)", big.api_rate(), small.api_rate(), "{:.2f}"),
        ("apiserver writes/s (all)", big.api_rate(True), small.api_rate(True), "{:.3f}"),
        ("operator requests/s", big.operator_rate(), small.operator_rate(), "{:.3f}"),
        ("operator writes/s", big.operator_rate(True), small.operator_rate(True), "{:.3f}"),
    ]
    print(f"  {'':<30}{n:>10}{m:>10}{'ratio':>9}")
    for label, a, b, fmt in rows:
        print(f"  {label:<30}{fmt.format(a):>10}{fmt.format(b):>10}{ratio(a, b):>9}")


# -- the run -------------------------------------------------------------------------------


def prepare(stack: Stack, mix: Mix, created: set[Queue], poll: int) -> None:
    """Redis state, then the JobQueues, for the queues of `mix` not created yet."""
    new = [q for q in mix.queues() if q not in created]
    publish_no_cron(stack.redis.port, new)
    enqueue(stack.redis.port, {q: q.backlog for q in new if q.kind == "busy"}, "backlog")
    began = time.monotonic()
    create_jobqueues(stack, new, poll)
    print(f"created {len(new)} JobQueues in {time.monotonic() - began:.1f} s", flush=True)
    created.update(new)


def measure(
    stack: Stack,
    mix: Mix,
    poll: int,
    seconds: float,
    memory_report: Path | None = None,
    memory_mode: str = "census",
) -> Result:
    """Operator started on the queues created so far, settled, then one window measured."""
    start_operator(stack, memory_report, memory_mode)
    settled_in = settle(stack, mix, timeout=180 + 0.6 * mix.total)
    print(f"{mix.describe()} settled in {settled_in:.0f} s; measuring {seconds:.0f} s", flush=True)
    result = Result(mix, poll, Recorder(stack, mix, seconds).run())
    report(result, settled_in)
    return result


def profile(stack: Stack) -> None:
    operator = stack.operator
    assert operator is not None
    assert operator.popen is not None
    output = Path(tempfile.gettempdir()) / f"operator-scale-{operator.popen.pid}.pyspy.txt"
    print(f"\npy-spy: recording the operator for {PROFILE_SECONDS} s ...", flush=True)
    problem = record(operator.popen.pid, PROFILE_SECONDS, output)
    if problem is not None:
        print(f"py-spy: {problem}")
        return
    print(f"py-spy raw stacks: {output}")
    for line in summarize(output):
        print(line)


def memory_profile(stack: Stack, report: Path) -> None:
    """Ask the operator's memory hook for its report (SIGUSR1) and print it."""
    operator = stack.operator
    assert operator is not None
    assert operator.popen is not None
    operator.popen.send_signal(signal.SIGUSR1)
    wait_for(report.exists, timeout=300, interval=0.5, what=f"memory report {report}")
    print(f"\n{report.read_text()}", end="")


def run(args: argparse.Namespace, stack: Stack) -> bool:
    bring_up(stack)
    created: set[Queue] = set()
    results = []
    sizes = [args.queues] if args.no_baseline else sorted({max(1, args.queues // 10), args.queues})
    # The census costs nothing until asked for, after the last window: always on.
    mode = "tracemalloc" if args.tracemalloc else "census"
    report = stack.plane.workdir / "memory" / "report.txt"
    for size in sizes:
        mix = Mix.of(size)
        prepare(stack, mix, created, args.poll)
        last = size == sizes[-1]
        memory = report if last else None
        results.append(measure(stack, mix, args.poll, args.seconds, memory, mode))
        if not last:
            stop_operator(stack)
    passed = print_verdicts(results[-1])
    if len(results) > 1:
        print_ratios(results[-1], results[0])
    if args.tracemalloc:
        print("\n(tracemalloc was on: the figures above are inflated by it, see them as a sketch)")
    memory_profile(stack, report)
    if not args.tracemalloc and (args.profile or not passed):
        profile(stack)
    return passed


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--queues", type=int, default=1000, help="JobQueues in the main run")
    parser.add_argument("--seconds", type=float, default=180, help="measurement window")
    parser.add_argument("--poll", type=int, default=5, help="scaling.pollSeconds of every queue")
    parser.add_argument("--no-baseline", action="store_true", help="skip the N/10 run")
    parser.add_argument("--profile", action="store_true", help="py-spy even if targets pass")
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="tracemalloc in the operator of the last run, in place of the cheaper census "
        "(slows the operator several times: use fewer queues; no py-spy then)",
    )
    return parser.parse_args()


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the teardown in main()


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, _terminate)
    began = time.monotonic()
    with open("/proc/loadavg") as loadavg:
        load = " ".join(loadavg.read().split()[:3])
    print(f"at start: load average {load} (1, 5, 15 min) on {os.cpu_count()} CPUs")
    stack = Stack()
    try:
        passed = run(args, stack)
    finally:
        left = tear_down(stack)
        print(f"\nteardown: {len(stack.pids)} processes started, "
              f"{'none left running' if not left else 'STILL RUNNING: ' + ', '.join(left)}; "
              f"took {time.monotonic() - began:.0f} s")  # fmt: skip
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
