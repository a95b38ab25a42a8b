"""Environment overrides: exact variable names, precedence over the user's settings, masking."""

from __future__ import annotations

import pytest
from arq.connections import RedisSettings

from arqfleet.worker.overrides import effective_redis_settings, worker_kwargs
from arqfleet.worker.settings import DEFAULT_DRAIN_SECONDS, WorkerEnv, mask_url

ENV = {
    "ARQFLEET_REDIS_URL": "redis://u:pw@redis.example:6380/3",
    "ARQFLEET_QUEUE_NAME": "q:jobs",
    "ARQFLEET_MAX_JOBS": "7",
    "ARQFLEET_JOB_TIMEOUT_SECONDS": "12.5",
    "ARQFLEET_DRAIN_SECONDS": "40",
    "ARQFLEET_HTTP_PORT": "9090",
    "ARQFLEET_POD_NAME": "worker-abc",
    "ARQFLEET_HEARTBEAT_SECONDS": "2",
}


async def job(ctx: dict[str, object]) -> None:
    return None


class UserSettings:
    functions = [job]  # noqa: RUF012 - a user's arq settings class, as users write it
    queue_name = "user:queue"
    max_jobs = 3
    job_timeout = 99
    job_completion_wait = 20
    handle_signals = False
    redis_settings = RedisSettings(host="user-host", port=1234, conn_timeout=7)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> WorkerEnv:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    return WorkerEnv()


def test_operator_variable_names_are_read(env: WorkerEnv) -> None:
    assert (env.redis_url, env.queue_name, env.max_jobs) == (ENV["ARQFLEET_REDIS_URL"], "q:jobs", 7)
    assert (env.job_timeout_seconds, env.drain_seconds) == (12.5, 40)
    assert (env.http_port, env.pod_name, env.heartbeat_seconds) == (9090, "worker-abc", 2)


def test_env_wins_over_the_users_settings(env: WorkerEnv) -> None:
    kwargs = worker_kwargs(UserSettings, env)
    assert kwargs["queue_name"] == "q:jobs"
    assert kwargs["max_jobs"] == 7
    assert kwargs["job_timeout"] == 12.5
    assert kwargs["job_completion_wait"] == 40
    assert kwargs["handle_signals"] is True  # the runtime is PID 1 and owns signals
    redis = effective_redis_settings(kwargs, env)
    assert (redis.host, redis.port, redis.database) == ("redis.example", 6380, 3)
    assert (redis.username, redis.password) == ("u", "pw")
    assert redis.conn_timeout == 7  # the user's connection tuning is kept


def test_unset_env_keeps_the_users_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    env = WorkerEnv()
    kwargs = worker_kwargs(UserSettings, env)
    assert (kwargs["queue_name"], kwargs["max_jobs"], kwargs["job_timeout"]) == (
        "user:queue",
        3,
        99,
    )
    assert kwargs["job_completion_wait"] == 20
    assert effective_redis_settings(kwargs, env).host == "user-host"
    assert worker_kwargs({"functions": [job]}, env)["job_completion_wait"] == DEFAULT_DRAIN_SECONDS


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://u:secret@h:6379/0", "redis://u:***@h:6379/0"),
        ("rediss://:secret@h/1", "rediss://:***@h/1"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("redis://:pw@[::1]:6379/0", "redis://:***@[::1]:6379/0"),
    ],
    ids=["user-and-password", "password-only", "no-password", "ipv6"],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_invalid_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARQFLEET_MAX_JOBS", "0")
    with pytest.raises(ValueError, match="max_jobs"):
        WorkerEnv()
