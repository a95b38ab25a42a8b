"""Start-up contract: exit codes for bad settings paths and broken modules; env overrides."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import cast

import redis
from arq.connections import ArqRedis, RedisSettings, create_pool

from tests.support.waiting import wait_for
from tests.support.worker_process import REPO_ROOT, WorkerProcess, subprocess_env


def run_worker(
    settings: str, *, pythonpath: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = subprocess_env({"ARQFLEET_REDIS_URL": "redis://127.0.0.1:1/0", **(env or {})})
    if pythonpath is not None:
        env["PYTHONPATH"] = f"{pythonpath}:{env['PYTHONPATH']}"
    return subprocess.run(
        [sys.executable, "-m", "arqfleet.worker", settings],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_unresolvable_path_exits_2_naming_the_path() -> None:
    for path in ("examples.app.nowhere.WorkerSettings", "examples.app.worker.NoSuchSettings"):
        result = run_worker(path)
        assert result.returncode == 2, result.stderr
        assert path in result.stderr


def test_an_invalid_environment_exits_3_naming_the_variable() -> None:
    result = run_worker("examples.app.worker.WorkerSettings", env={"ARQFLEET_MAX_JOBS": "many"})
    assert result.returncode == 3, result.stderr
    assert "invalid ARQFLEET_* environment" in result.stderr
    assert "max_jobs" in result.stderr


def test_settings_module_that_raises_exits_1_with_its_traceback(tmp_path: Path) -> None:
    (tmp_path / "broken_settings.py").write_text(
        "import missing_dependency_xyz\nclass WorkerSettings:\n    functions = []\n"
    )
    result = run_worker("broken_settings.WorkerSettings", pythonpath=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" in result.stderr
    assert "missing_dependency_xyz" in result.stderr


async def test_env_overrides_queue_name_and_redis_url(
    start_worker: Callable[..., WorkerProcess], redis_client: redis.Redis, redis_url: str
) -> None:
    # The settings' REDIS_URL points at port 1 (see FAST_ENV): running jobs proves the env won.
    start_worker(ARQFLEET_QUEUE_NAME="custom:queue").wait_ready()
    pool: ArqRedis = await create_pool(
        RedisSettings.from_dsn(redis_url), default_queue_name="custom:queue"
    )
    try:
        await pool.enqueue_job("fast", "on-custom-queue")
    finally:
        await pool.aclose()
    wait_for(
        lambda: (
            cast(list[bytes], redis_client.lrange("example:done", 0, -1)) == [b"on-custom-queue"]
        ),
        timeout=5,
        what="job on the overridden queue done",
    )
