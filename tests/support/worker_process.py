"""A real `arqfleet-worker` subprocess running the example app, for integration tests.

Started as `python -m arqfleet.worker examples.app.worker.WorkerSettings` from the repo root with
an explicit ARQFLEET_* environment (nothing inherited), so each test states the knobs it relies
on. Signals are real (`os.kill`); probes and metrics are read over real HTTP.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from localcluster import free_port
from tests.support.waiting import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
EXAMPLE_SETTINGS = "examples.app.worker.WorkerSettings"

# Fast defaults so tests run in seconds: 50 ms polls, frequent beats, short in-progress TTLs.
FAST_ENV = {
    "ARQFLEET_POLL_DELAY_SECONDS": "0.05",
    "ARQFLEET_HEARTBEAT_SECONDS": "0.5",
    "ARQFLEET_JOB_TIMEOUT_SECONDS": "5",
    "ARQFLEET_DRAIN_SECONDS": "5",
    "ARQFLEET_MAX_JOBS": "10",
    "EXAMPLE_CRON_EVERY_SECONDS": "0",
    # The app's own setting points nowhere: every test also proves ARQFLEET_REDIS_URL wins.
    "REDIS_URL": "redis://127.0.0.1:1/0",
}


def subprocess_env(extra: dict[str, str]) -> dict[str, str]:
    """The parent's environment without ARQFLEET_*/EXAMPLE_* variables, plus `extra`."""
    owned = ("ARQFLEET_", "EXAMPLE_", "REDIS_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(owned)}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    env.update(extra)
    return env


@dataclass
class WorkerProcess:
    redis_url: str
    env: dict[str, str] = field(default_factory=dict)
    settings: str = EXAMPLE_SETTINGS
    port: int = field(default_factory=free_port)
    pod_name: str = field(default_factory=lambda: f"pod-{free_port()}")
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(
        default_factory=lambda: Path(tempfile.mkstemp(prefix="arqfleet-worker-", suffix=".log")[1])
    )

    def start(self) -> WorkerProcess:
        env = subprocess_env(
            {
                **FAST_ENV,
                "ARQFLEET_REDIS_URL": self.redis_url,
                "ARQFLEET_HTTP_PORT": str(self.port),
                "ARQFLEET_POD_NAME": self.pod_name,
                **self.env,
            }
        )
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "arqfleet.worker", self.settings],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str) -> tuple[int, str]:
        """(status, body) of GET path; (0, error) when nothing answers."""
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            body = exc.read().decode()
            exc.close()
            return exc.code, body
        except OSError as exc:
            return 0, str(exc)

    def ready(self) -> bool:
        return self.get("/readyz")[0] == 200

    def wait_ready(self, timeout: float = 15) -> WorkerProcess:
        def check() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.log()}")
            return self.ready()

        wait_for(check, timeout=timeout, what=f"worker {self.pod_name} ready")
        return self

    def metrics(self) -> Samples:
        """Samples of /metrics as {(name, sorted labels): value}."""
        status, body = self.get("/metrics")
        assert status == 200, body
        samples = {}
        for family in text_string_to_metric_families(body):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return samples

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait_exit(self, timeout: float) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker still running after {timeout}s:\n{self.log()}") from None

    def stop(self) -> None:
        """Cleanup: SIGKILL if still running, remove the log."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.log_path.unlink(missing_ok=True)


def metric(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value, 0 when absent."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)
