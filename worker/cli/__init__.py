"""``scm-worker`` command line: parse, configure, dispatch, and speak in exit codes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from worker import __version__
from worker.cli import (
    bench_cmd,
    broker_cmd,
    bundle_cmd,
    calibrate_cmd,
    demo_cmd,
    dlq_cmd,
    events_cmd,
    fleet_cmd,
    policy_cmd,
    replay_cmd,
    run_cmd,
    solver_cmd,
    tau_cmd,
)
from worker.cli.exit_codes import (
    EXIT_FATAL,
    EXIT_INTERNAL,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_USAGE,
    exit_code_of,
)
from worker.logging import configure

__all__ = ["EXIT_FATAL", "EXIT_INTERNAL", "EXIT_INVALID", "EXIT_OK", "EXIT_USAGE", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The full argument tree; each subcommand module adds its own parsers."""
    parser = argparse.ArgumentParser(
        prog="scm-worker",
        description="Strict-inference worker for zeroproofml bundles on Kafka.",
    )
    parser.add_argument("--version", action="version", version=f"scm-worker {__version__}")
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="structlog JSON log level on stderr (default: warning)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run_cmd.register(commands)
    broker_cmd.register(commands)
    bundle_cmd.register(commands)
    demo_cmd.register(commands)
    events_cmd.register(commands)
    tau_cmd.register(commands)
    policy_cmd.register(commands)
    replay_cmd.register(commands)
    calibrate_cmd.register(commands)
    solver_cmd.register(commands)
    fleet_cmd.register(commands)
    dlq_cmd.register(commands)
    bench_cmd.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit code; fatal errors become one clear line."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors and 0 on --help
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    configure(args.log_level)
    return exit_code_of(lambda: int(args.handler(args)))


def run_main() -> None:
    """Console-script entry point."""
    sys.exit(main())
