"""hack/ stops only the processes it started: a pid saved in a state file may belong to an
unrelated process by the time `hack/cluster down` or `hack/demo --stop` reads it."""

from __future__ import annotations

import subprocess
import sys

from localcluster import is_ours, process_identity, stop_pids


def sleeper(seconds: int = 60) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"])


def test_a_reused_pid_is_not_signalled() -> None:
    # Another command line: a pid is reused by another program (the start time differs too,
    # except when both start within one clock tick, as they may here).
    ours, stranger = sleeper(60), sleeper(61)
    try:
        saved = process_identity(ours.pid)
        assert saved is not None
        assert is_ours(ours.pid, saved)
        # The state file says "worker: <pid>", but that pid now belongs to someone else.
        stop_pids({"worker": stranger.pid}, timeout=2, identities={"worker": saved})
        assert stranger.poll() is None, "an unrelated process was signalled"
        # Without a saved identity (an old state file) nothing is signalled either.
        stop_pids({"worker": stranger.pid}, timeout=2)
        assert stranger.poll() is None
        # The process whose identity matches is stopped.
        stop_pids({"worker": ours.pid}, timeout=5, identities={"worker": saved})
        assert ours.wait(timeout=5) != 0
    finally:
        for process in (ours, stranger):
            process.kill()
            process.wait(timeout=5)


def test_identity_of_a_gone_process_is_none() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=10)
    assert process_identity(gone.pid) is None
