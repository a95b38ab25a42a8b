"""A real redis-server on a free loopback port, with no persistence, for one test."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import redis

from localcluster import free_port
from tests.support.waiting import wait_for


@dataclass
class RedisServer:
    """One redis-server process. `stop()` and `start()` may be called repeatedly (outages)."""

    port: int = field(default_factory=free_port)
    persistent: bool = False
    """Append-only file on: a stop and start keeps the data (a Redis restart, not a wipe)."""
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="arqfleet-redis-")))
    bind: str = "127.0.0.1"
    """The address it listens on: a real node's pods reach the host at its bridge gateway."""
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.bind}:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                self.bind,
                # Off beyond loopback: pods on the run's bridge are its clients, and the
                # bridge routes nowhere (hack/localnode.py).
                "--protected-mode",
                "yes" if self.bind == "127.0.0.1" else "no",
                "--save",
                "",
                "--appendonly",
                "yes" if self.persistent else "no",
                "--appendfsync",
                "always",
                "--dir",
                str(self.workdir),
                "--logfile",
                str(self.workdir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host=self.bind, port=self.port, socket_connect_timeout=0.2)
        try:
            wait_for(self._answers(client), timeout=10, what=f"redis-server on :{self.port}")
        finally:
            client.close()

    def set_password(self, password: str) -> None:
        """Require AUTH from now on (the default user's password), as a production Redis does."""
        client = redis.Redis(host=self.bind, port=self.port)
        try:
            client.config_set("requirepass", password)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    @staticmethod
    def _answers(client: redis.Redis):
        def check() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        return check
