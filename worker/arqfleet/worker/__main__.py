"""arqfleet-worker: not implemented yet (the worker runtime issue builds it)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="arqfleet-worker",
        description="Run a user's ARQ WorkerSettings with graceful drain, probes and metrics.",
    )
    parser.add_argument("settings", help="import path of the ARQ WorkerSettings, e.g. app.worker.WorkerSettings")
    parser.parse_args(argv)
    print("arqfleet-worker: the worker runtime is not implemented yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
