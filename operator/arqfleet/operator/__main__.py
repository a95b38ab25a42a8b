"""arqfleet-operator: not implemented yet (the operator core issue builds it)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="arqfleet-operator",
        description="Kubernetes operator that runs and autoscales ARQ workers per JobQueue.",
    )
    parser.parse_args(argv)
    print("arqfleet-operator: the operator is not implemented yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
