"""A real Prometheus server (Debian's binary, from the cache) on a loopback port for one test.

It loads the rule files it is given and scrapes through file-based service discovery, so a
test adds and removes targets (worker pods come and go) by rewriting a JSON file, as the
Prometheus Operator's pod discovery would. Scrapes and rule evaluations run every second, so a
test sees a change within a few seconds. Nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from localcluster import free_port, stop_process
from tests.support.prometheus_tools import prometheus_binary
from tests.support.waiting import wait_for

INTERVAL = "1s"


@dataclass(frozen=True)
class ApiAnswer:
    """One answer of the HTTP API: the status code and the decoded JSON body."""

    status: int
    body: dict[str, Any]

    @property
    def data(self) -> Any:
        assert self.status == 200, (self.status, self.body)
        return self.body["data"]


@dataclass
class ScrapeJob:
    """One scrape job whose targets come from a file the test rewrites (`set_targets`)."""

    name: str
    # The operator's per-JobQueue series carry namespace and jobqueue labels of their own;
    # honor_labels keeps them instead of renaming them exported_namespace under the target's.
    honor_labels: bool = False


@dataclass
class PrometheusServer:
    rule_files: list[Path]
    jobs: list[ScrapeJob]
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="arqfleet-prom-")))
    port: int = field(default_factory=free_port)
    popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "prometheus.log"

    def targets_file(self, job: str) -> Path:
        return self.workdir / "targets" / f"{job}.json"

    def config(self) -> dict[str, Any]:
        return {
            "global": {
                "scrape_interval": INTERVAL,
                "scrape_timeout": INTERVAL,  # may not exceed the interval
                "evaluation_interval": INTERVAL,
            },
            # Relative paths would be read from the config file's directory.
            "rule_files": [str(path.resolve()) for path in self.rule_files],
            "scrape_configs": [
                {
                    "job_name": job.name,
                    "honor_labels": job.honor_labels,
                    # Prometheus watches the file (inotify); the refresh is only a fallback.
                    "file_sd_configs": [
                        {"files": [str(self.targets_file(job.name))], "refresh_interval": "1s"}
                    ],
                }
                for job in self.jobs
            ],
        }

    def start(self, timeout: float = 30) -> PrometheusServer:
        (self.workdir / "targets").mkdir(parents=True, exist_ok=True)
        for job in self.jobs:
            if not self.targets_file(job.name).exists():
                self.set_targets(job.name, [])
        config = self.workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        argv = [
            str(prometheus_binary()),
            f"--config.file={config}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._ready, timeout=timeout, what=f"prometheus ready (log: {self.log_path})")
        return self

    def _ready(self) -> bool:
        assert self.popen is not None
        if self.popen.poll() is not None:
            raise RuntimeError(f"prometheus exited with {self.popen.returncode}:\n{self.log()}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def set_targets(self, job: str, groups: list[dict[str, Any]]) -> None:
        """Replace the targets of `job`: file_sd groups, [{"targets": [...], "labels": {...}}].

        Written beside and renamed over, so Prometheus never reads a half-written file."""
        path = self.targets_file(job)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(groups, sort_keys=True))
        os.replace(partial, path)

    def get(self, path: str, **params: str) -> ApiAnswer:
        """GET /api/v1/<path>; an error status is an answer too (a query that does not parse
        is a 400 with the parser's message)."""
        query = urllib.parse.urlencode(params)
        url = f"{self.url}/api/v1/{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return ApiAnswer(response.status, json.loads(response.read()))
        except urllib.error.HTTPError as error:
            return ApiAnswer(error.code, json.loads(error.read() or b"{}"))

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector `expr` evaluates to now."""
        result: list[dict[str, Any]] = self.get("query", query=expr).data["result"]
        return result

    def query_range(self, expr: str, start: float, end: float, step: str = "1s") -> ApiAnswer:
        """`expr` over [start, end] (unix seconds), as Grafana asks for a panel's data."""
        return self.get("query_range", query=expr, start=str(start), end=str(end), step=step)

    def alerts(self) -> list[dict[str, Any]]:
        """The active (pending or firing) alerts."""
        alerts: list[dict[str, Any]] = self.get("alerts").data["alerts"]
        return alerts

    def rules(self) -> list[dict[str, Any]]:
        """Every loaded rule with its health and last error, across groups."""
        groups = self.get("rules").data["groups"]
        return [rule for group in groups for rule in group["rules"]]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 30) -> int:
        if self.popen is None:
            return 0
        code = stop_process(self.popen, timeout)
        self.popen = None
        return code

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
