"""`arqfleet`: the user-facing command line (CRD rendering; dead-letter tools from the worker)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from arqfleet.operator import crd, rbac


def _crd(args: argparse.Namespace) -> int:
    text = crd.render_crd_yaml()
    if args.output is None:
        sys.stdout.write(text)
        return 0
    target = Path(args.output)
    if target.is_dir() or args.output.endswith("/"):
        target = target / crd.CRD_FILENAME
    if args.check:
        current = target.read_text() if target.exists() else ""
        if current != text:
            print(f"{target} is out of date: run `arqfleet crd --output {target}`", file=sys.stderr)
            return 1
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    print(f"wrote {target}", file=sys.stderr)
    return 0


def _rbac(args: argparse.Namespace) -> int:
    if args.rules_only:
        # What the Helm chart templates its Role/ClusterRole from: one source for both.
        sys.stdout.write(yaml.safe_dump({"rules": rbac.NAMESPACED_RULES}, sort_keys=False))
        return 0
    objects = (
        rbac.namespaced(
            args.namespace, service_account=args.service_account, namespace=args.operator_namespace
        )
        if args.namespace
        else rbac.clusterwide(
            service_account=args.service_account, namespace=args.operator_namespace
        )
    )
    sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="arqfleet", description="arqfleet: autoscaled ARQ worker fleets on Kubernetes."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    crd_cmd = commands.add_parser("crd", help="print or write the JobQueue CRD YAML")
    crd_cmd.add_argument("--output", "-o", help="file or directory (default: stdout)")
    crd_cmd.add_argument(
        "--check", action="store_true", help="fail if --output differs from the models"
    )
    crd_cmd.set_defaults(func=_crd)

    rbac_cmd = commands.add_parser(
        "rbac", help="print the operator's RBAC (ClusterRole, or Roles with --namespace)"
    )
    rbac_cmd.add_argument(
        "--namespace", action="append", help="namespaced mode: a Role here (repeatable)"
    )
    rbac_cmd.add_argument("--service-account", default="arqfleet-operator")
    rbac_cmd.add_argument(
        "--operator-namespace", default="arqfleet-system", help="where the operator runs"
    )
    rbac_cmd.add_argument(
        "--rules-only", action="store_true", help="print only the rules (the chart's source)"
    )
    rbac_cmd.set_defaults(func=_rbac)

    try:  # the dead-letter tools belong to the worker package, which writes the store
        from arqfleet.worker.cli import add_dlq_parser
    except ImportError:  # pragma: no cover - only while the worker runtime is incomplete
        pass
    else:
        add_dlq_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
