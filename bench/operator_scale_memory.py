"""Where the operator's memory goes, from inside the real operator process, without touching
the operator's code.

py-spy samples stacks, not allocations. So for `--memory-profile`, the operator is started
with a `sitecustomize.py` on its PYTHONPATH that, when ARQFLEET_BENCH_MEMORY names an output
file, installs a SIGUSR1 handler writing a report there. Two modes (ARQFLEET_BENCH_MEMORY_MODE):

- "census" (the default, no cost until the signal): live container objects by type with their
  shallow sizes (gc), and pymalloc's arenas (how much of the heap is in use, how much is free
  but held): cheap enough for the 1,000-queue run, and its figures stand;
- "tracemalloc": started before anything is imported, the largest live allocations by package,
  line and arqfleet frame. It slows the operator several times over (at 1,000 queues its
  start-up reconciles time out), so use it on fewer queues, for attribution only.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import tempfile
import tracemalloc
from collections import Counter
from pathlib import Path
from types import FrameType

ENV = "ARQFLEET_BENCH_MEMORY"
MODE_ENV = "ARQFLEET_BENCH_MEMORY_MODE"
MODES = ("census", "tracemalloc")
FRAMES = 12
TOP = 20

SITECUSTOMIZE = f"""\
import os, sys
if os.environ.get({ENV!r}):
    sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
    from bench.operator_scale_memory import install
    install(os.environ[{ENV!r}], os.environ.get({MODE_ENV!r}, "census"))
"""


def sitecustomize_dir(directory: Path) -> Path:
    """A directory holding the hook, for the operator's PYTHONPATH."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return directory


def install(output: str, mode: str) -> None:
    """In the operator process: SIGUSR1 writes a report of `mode` to `output`."""
    if mode == "tracemalloc":
        tracemalloc.start(FRAMES)

    def dump(signum: int, frame: FrameType | None) -> None:
        report = Path(output)
        partial = report.with_suffix(".partial")
        lines = describe(tracemalloc.take_snapshot()) if mode == "tracemalloc" else census()
        partial.write_text("\n".join(lines) + "\n")
        os.replace(partial, report)  # readers see the whole report or none

    signal.signal(signal.SIGUSR1, dump)


def _package(filename: str) -> str:
    for marker in ("site-packages/", "lib/python3.11/", "operator/arqfleet/"):
        if marker in filename:
            rest = filename.split(marker, 1)[1]
            name = rest.split("/", 1)[0].removesuffix(".py")
            return "arqfleet.operator" if marker == "operator/arqfleet/" else name
    return filename


def describe(snapshot: tracemalloc.Snapshot) -> list[str]:
    """Live memory by package of the allocating line, by line, and by the arqfleet frame
    that led to it (the innermost arqfleet frame on the allocation's traceback)."""
    snapshot = snapshot.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    stats = snapshot.statistics("traceback")
    total = sum(s.size for s in stats)
    by_package: dict[str, int] = {}
    by_ours: dict[str, int] = {}
    for stat in stats:
        package = _package(stat.traceback[0].filename)
        by_package[package] = by_package.get(package, 0) + stat.size
        ours = next((f for f in stat.traceback if "operator/arqfleet/" in f.filename), None)
        where = f"{Path(ours.filename).name}:{ours.lineno}" if ours else "(no arqfleet frame)"
        by_ours[where] = by_ours.get(where, 0) + stat.size
    lines = [f"tracemalloc: {total / 2**20:.1f} MiB live in Python allocations"]
    lines += _top("by package of the allocating line", by_package, total)
    lines += _top("by the innermost arqfleet frame on the allocation's stack", by_ours, total)
    lines.append("by line:")
    for stat in snapshot.statistics("lineno")[:TOP]:
        frame = stat.traceback[0]
        place = "/".join(frame.filename.split("/")[-2:])
        lines.append(f"  {stat.size / 2**20:7.1f} MiB  {place}:{frame.lineno}")
    return lines


def _top(title: str, sizes: dict[str, int], total: int) -> list[str]:
    ranked = sorted(sizes.items(), key=lambda item: -item[1])[:TOP]
    return [f"{title}:"] + [
        f"  {size / 2**20:7.1f} MiB {size / total:6.1%}  {name}" for name, size in ranked
    ]


def census() -> list[str]:
    """Live container objects by type (shallow sizes: the strings, numbers and bytes they
    hold are not counted, nor is memory outside Python's objects), then pymalloc's arenas."""
    gc.collect()
    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for obj in gc.get_objects():
        kind = type(obj)
        name = f"{kind.__module__}.{kind.__qualname__}"
        counts[name] += 1
        sizes[name] += sys.getsizeof(obj)
    total = sum(sizes.values())
    lines = [
        f"gc census: {counts.total()} container objects, {total / 2**20:.1f} MiB shallow",
        "  (their strings, numbers and bytes, and memory outside Python objects, not counted)",
    ]
    lines += [
        f"  {sizes[n] / 2**20:7.1f} MiB {counts[n]:>9}  {n}" for n, _ in sizes.most_common(TOP)
    ]
    return lines + pymalloc_arenas()


def pymalloc_arenas() -> list[str]:
    """The summary lines of `sys._debugmallocstats()`: arenas held, bytes in use and free.
    It writes to the C-level stderr, so fd 2 is pointed at a file for the call."""
    with tempfile.TemporaryFile(mode="w+") as capture:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(capture.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        text = capture.read()
    wanted = ("# arenas allocated current", "# bytes in allocated blocks", "# bytes in available")
    found = [line.strip() for line in text.splitlines() if line.startswith(wanted)]
    return ["pymalloc (objects <= 512 bytes):", *(f"  {line}" for line in found)]
