"""arqfleet-operator: run the kopf operator (namespaced or cluster-wide) with liveness."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

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
    parser.add_argument("--metrics-port", type=int, help="Prometheus port (default 8080)")
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


def export_settings(settings: OperatorSettings) -> None:
    """Hand the command line to the handlers (which read ARQFLEET_* at kopf start-up) and to
    kopf's login, which reads KUBECONFIG when its client library is first imported."""
    if settings.kubeconfig:
        os.environ["KUBECONFIG"] = settings.kubeconfig
        os.environ["ARQFLEET_KUBECONFIG"] = settings.kubeconfig
    os.environ["ARQFLEET_NAMESPACES"] = ",".join(settings.namespaces)
    os.environ["ARQFLEET_METRICS_PORT"] = str(settings.metrics_port)


def main(argv: list[str] | None = None) -> int:
    settings = load_settings(parse_args(argv))
    export_settings(settings)
    # Imported only now, so that the environment above is what they see.
    import kopf

    from arqfleet.operator import handlers  # noqa: F401  (registers the handlers)

    kopf.configure(
        verbose=settings.verbose,
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL,
    )
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
