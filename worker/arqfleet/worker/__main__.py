"""arqfleet-worker: run a user's ARQ WorkerSettings with drain, probes, metrics and heartbeats.

Decides the process contract: exit 2 when the settings path does not resolve, 3 when the
ARQFLEET_* environment is invalid, 1 when the user's module raises on import (traceback printed)
or Redis cannot be reached (at start-up, or for the last writes at shutdown: the log names
them), 0 after a drain. The operator reads 2 and 3 from the pod's status to
tell the user which of their fields is wrong. It is meant to be the container's PID 1 (exec
form, no shell), so it installs its own SIGTERM handling from the first instruction on.
"""

from __future__ import annotations

import argparse
import asyncio
import logging.config
import signal
import sys
from types import FrameType

from pydantic import ValidationError

from arqfleet.worker.loading import SettingsImportFailed, SettingsNotFound, load_settings
from arqfleet.worker.settings import WorkerEnv

EXIT_SETTINGS_NOT_FOUND = 2
EXIT_INVALID_ENVIRONMENT = 3


def _exit_during_startup(signum: int, _frame: FrameType | None) -> None:
    # Until arq installs its handlers nothing runs, so stopping at once loses nothing. As PID 1
    # without a handler, SIGTERM would be ignored and the pod would wait for SIGKILL.
    raise SystemExit(0)


def configure_logging(level: str) -> None:
    handler = {"class": "logging.StreamHandler", "formatter": "plain"}
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"stderr": handler},
            "formatters": {"plain": {"format": "%(asctime)s %(name)s: %(message)s"}},
            "loggers": {
                "arq": {"handlers": ["stderr"], "level": level.upper()},
                "arqfleet": {"handlers": ["stderr"], "level": level.upper()},
            },
        }
    )


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_during_startup)
    parser = argparse.ArgumentParser(
        prog="arqfleet-worker",
        description="Run a user's ARQ WorkerSettings with graceful drain, probes and metrics. "
        "ARQFLEET_* environment variables override the settings.",
    )
    parser.add_argument(
        "settings", help="import path of the ARQ WorkerSettings, e.g. app.worker.WorkerSettings"
    )
    args = parser.parse_args(argv)
    try:
        env = WorkerEnv()
    except ValidationError as exc:
        print(f"arqfleet-worker: invalid ARQFLEET_* environment:\n{exc}", file=sys.stderr)
        return EXIT_INVALID_ENVIRONMENT
    configure_logging(env.log_level)
    try:
        settings = load_settings(args.settings)
    except SettingsNotFound as exc:
        print(f"arqfleet-worker: {exc}", file=sys.stderr)
        return EXIT_SETTINGS_NOT_FOUND
    except SettingsImportFailed as exc:
        print(exc.details, file=sys.stderr, end="")
        print(f"arqfleet-worker: {exc}", file=sys.stderr)
        return 1
    # Imported after the settings: a wrong path fails fast, before arq and aiohttp load.
    from arqfleet.worker.runtime import run

    return asyncio.run(run(settings, env))


if __name__ == "__main__":
    sys.exit(main())
