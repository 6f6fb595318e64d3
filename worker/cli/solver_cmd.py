"""``scm-worker solver``: the reference analytic fallback service for the robotics bundle."""

from __future__ import annotations

import argparse
import os
import threading
from typing import Any

from worker.cli.exit_codes import EXIT_OK
from worker.cli.run_cmd import install_signals
from worker.config import build_service_config, parse_kafka_pairs
from worker.solver.service import SolverConfig, SolverService


def register(commands: Any) -> None:
    """Add ``solver``; every flag also reads SCM_WORKER_<FLAG>."""
    solver = commands.add_parser(
        "solver", help="answer solver requests with damped least squares (reference fallback)"
    )
    add = solver.add_argument
    add("--bootstrap-servers", metavar="HOST:PORT")
    add("--group-id", metavar="G", help="consumer group (default scm-solver)")
    add("--requests-topic", metavar="T", help="the worker's --solver-topic")
    add("--answers-topic", metavar="T", help="where answers go, keyed like the request")
    add("--damping", type=float, metavar="LAMBDA", help="DLS damping (default 0.01)")
    add("--input-name", metavar="NAME", help="bundle input holding the reading (default input_0)")
    add("--metrics-port", type=int, metavar="P", help="serve Prometheus /metrics")
    add("--kafka-config", action="append", default=[], metavar="KEY=VALUE")
    solver.set_defaults(handler=cmd_solver)


def service_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed flags a companion service's config reads (kafka pairs parsed)."""
    flags = {k: v for k, v in vars(args).items() if k not in {"handler", "command", "log_level"}}
    flags["kafka_config"] = parse_kafka_pairs(args.kafka_config, "--kafka-config")
    return flags


def cmd_solver(args: argparse.Namespace) -> int:
    """Answer requests until SIGTERM/SIGINT."""
    config = build_service_config(SolverConfig, service_flags(args), os.environ)
    stop = threading.Event()
    install_signals(stop)
    SolverService(config).run(stop)
    return EXIT_OK
