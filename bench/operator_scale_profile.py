"""py-spy on the running operator: where its CPU time goes, summarized from collapsed stacks.

py-spy comes with the `bench` dependency group (hack/setup installs it into the venv, beside
the venv's python, where this looks for it). It samples only threads that are on the CPU (no
--idle), so the shares below are shares of the operator's CPU time, not of wall time.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

TOP = 12
# "function (path/to/file.py:123)": the line number is dropped so one function is one row.
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def record(pid: int, seconds: int, output: Path) -> str | None:
    """Sample `pid` for `seconds` at 100 Hz into `output` (raw collapsed stacks).

    Returns why it could not, or None. --nonblocking: the operator is not paused per sample,
    so the profile does not slow the loop it looks at (stacks may be slightly torn)."""
    binary = py_spy()
    if binary is None:
        return "py-spy is not installed (make setup installs it with the bench group)"
    argv = [binary, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "100"]
    argv += ["--format", "raw", "--output", str(output), "--nonblocking"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0 or not output.exists():
        return f"py-spy exited {done.returncode}: {done.stderr.strip()[-500:]}"
    return None


def _frame_name(frame: str) -> str:
    match = _FRAME.match(frame)
    if match is None:
        return frame
    path = match.group("file")
    # The last two path parts name a module well enough (kopf/_core/..., asyncio/events.py).
    short = "/".join(path.split("/")[-2:])
    return f"{match.group('function')} ({short})"


def _module_of(frame: str) -> str:
    match = _FRAME.match(frame)
    path = match.group("file") if match else frame
    for marker in ("site-packages/", "lib/python3.11/", "operator/arqfleet/"):
        if marker in path:
            rest = path.split(marker, 1)[1]
            package = rest.split("/", 1)[0].removesuffix(".py")
            return "arqfleet.operator" if marker == "operator/arqfleet/" else package
    return path


def summarize(output: Path) -> list[str]:
    """Top functions by self time and by inclusive time, and packages by self time."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    samples = 0
    for line in output.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f]
        if not frames:
            continue
        samples += count
        own[_frame_name(frames[-1])] += count
        packages[_module_of(frames[-1])] += count
        for name in {_frame_name(f) for f in frames}:  # once per stack: recursion counts once
            inclusive[name] += count
    if not samples:
        return ["py-spy recorded no on-CPU samples"]
    lines = [f"{samples} on-CPU samples (100 Hz)", "self time by package (leaf frame):"]
    lines += [f"  {n / samples:6.1%}  {name}" for name, n in packages.most_common(TOP)]
    lines.append("self time by function:")
    lines += [f"  {n / samples:6.1%}  {name}" for name, n in own.most_common(TOP)]
    lines.append("inclusive time by function (on the stack):")
    lines += [f"  {n / samples:6.1%}  {name}" for name, n in inclusive.most_common(TOP + 8)]
    return lines
