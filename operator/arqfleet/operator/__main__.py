"""arqfleet-operator: run the kopf operator (namespaced or cluster-wide) with liveness."""

from __future__ import annotations

import argparse
import asyncio
import sys

import kopf

from arqfleet.operator.settings import OperatorSettings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="arqfleet-operator",
        description="Kubernetes operator that runs and autoscales ARQ workers per JobQueue. "
        "Every option also reads ARQFLEET_* environment variables.",
    )
    parser.add_argument(
        "--namespace",
        "-n",
        action="append",
        dest="namespaces",
        help="watch only this namespace (repeatable); default: cluster-wide",
    )
    parser.add_argument("--liveness-port", type=int, help="kopf liveness port (default 8081)")
    parser.add_argument("--log-format", choices=["text", "json"], help="log format")
    parser.add_argument("--verbose", "-v", action="store_true", default=None)
    parser.add_argument("--kubeconfig", help="kubeconfig path (default: in-cluster)")
    return parser.parse_args(argv)


def load_settings(args: argparse.Namespace) -> OperatorSettings:
    overrides = {
        key: value
        for key, value in vars(args).items()
        if value is not None and key in OperatorSettings.model_fields
    }
    return OperatorSettings(**overrides)


def main(argv: list[str] | None = None) -> int:
    settings = load_settings(parse_args(argv))
    kopf.configure(
        verbose=settings.verbose,
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL,
    )
    # The handlers read their settings from the same environment at kopf start-up.
    import os

    if settings.kubeconfig:
        os.environ["ARQFLEET_KUBECONFIG"] = settings.kubeconfig
        os.environ.setdefault("KUBECONFIG", settings.kubeconfig)
    from arqfleet.operator import handlers  # noqa: F401  (registers the handlers)

    asyncio.run(
        kopf.operator(
            clusterwide=settings.clusterwide,
            namespaces=settings.namespaces,
            liveness_endpoint=settings.liveness_endpoint,
            standalone=True,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
