"""The `berth` command line: `berth run` starts the operator."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from berth import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="berth", description="Run container registries in Kubernetes and look after their contents.")
    parser.add_argument("--version", action="version", version=f"berth {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="start the operator")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace", "-n", action="append", default=[], metavar="NAMESPACE",
        help="watch only this namespace (repeat for several; globs such as team-* work). Default: $BERTH_NAMESPACES, or all namespaces",
    )
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace (needs cluster-wide RBAC)")
    run.add_argument("--log-format", choices=["plain", "full", "json"], default=os.environ.get("BERTH_LOG_FORMAT", "full"), help="log line format (default: full)")
    run.add_argument("--health-port", type=int, default=int(os.environ.get("BERTH_HEALTH_PORT", "8080")), help="port of the /healthz liveness endpoint; 0 disables it (default: 8080)")
    run.add_argument("--verbose", "-v", action="store_true", help="log at DEBUG level")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the requested command."""
    args = _parser().parse_args(argv)
    if args.command == "run":
        return _run(args)
    return 2


def _run(args: argparse.Namespace) -> int:
    from berth import settings

    # Check settings before importing the handlers, which read them at import.
    try:
        settings.from_environment()
    except settings.SettingsError as error:
        print(f"berth: {error}", file=sys.stderr)
        return 2

    import kopf

    from berth import handlers
    namespaces = list(args.namespace)
    if not namespaces and not args.all_namespaces:
        namespaces = [item.strip() for item in os.environ.get("BERTH_NAMESPACES", "").split(",") if item.strip()]
    if not 0 <= args.health_port <= 65535:
        print(f"berth: invalid --health-port {args.health_port}, expected 0-65535", file=sys.stderr)
        return 2
    log_format = {"plain": kopf.LogFormat.PLAIN, "full": kopf.LogFormat.FULL, "json": kopf.LogFormat.JSON}[args.log_format]
    kopf.configure(verbose=args.verbose, log_format=log_format, log_prefix=True)
    if not args.verbose:
        # Kopf logs every handler and timer success at INFO, and aiohttp every /healthz probe.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    liveness = f"http://0.0.0.0:{args.health_port}/healthz" if args.health_port else None
    del handlers  # imported for its Kopf registrations
    kopf.run(standalone=True, clusterwide=not namespaces, namespaces=namespaces, liveness_endpoint=liveness)
    return 0


if __name__ == "__main__":
    sys.exit(main())
