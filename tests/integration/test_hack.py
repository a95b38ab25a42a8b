"""hack/ on machines as they are: it stops only the processes it started (a pid saved in a
state file may belong to an unrelated process by the time it is read), and it builds with a
Go it fetches itself where the machine's is missing or too old."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from localcluster import is_ours, process_identity, stop_pids
from tests.support.kube import REPO_ROOT


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


def test_a_machine_without_a_new_enough_go_gets_the_pinned_toolchain() -> None:
    """hack/ensure-go fetches golang.org/toolchain through the module proxy (checked by its
    SHA-256) when the machine's go is missing or too old; forced here, as on such a machine."""
    found = subprocess.run(
        [str(REPO_ROOT / "hack" / "ensure-go")],
        env={**os.environ, "ARQFLEET_FORCE_GO_DOWNLOAD": "1"},
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    go = Path(found.stdout.strip()) / "go"
    version = subprocess.run(
        [str(go), "version"], capture_output=True, text=True, check=True, timeout=60
    )
    assert version.stdout.startswith("go version go1.26.8 linux/")
