"""``scm-worker fleet``: a simulated fleet of RR arms publishing feature messages."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from typing import Any

import orjson

from worker.cli.exit_codes import EXIT_OK
from worker.cli.run_cmd import install_signals
from worker.cli.solver_cmd import service_flags
from worker.config import build_service_config
from worker.fleet.publish import FleetConfig, publish


def register(commands: Any) -> None:
    """Add ``fleet``; every flag also reads SCM_WORKER_<FLAG>."""
    fleet = commands.add_parser("fleet", help="publish simulated RR-arm feature messages")
    add = fleet.add_argument
    add("--bootstrap-servers", metavar="HOST:PORT")
    add("--topic", metavar="T", help="the worker's --input-topic")
    add("--devices", type=int, metavar="N", help="robots (default 20)")
    add("--rate", type=float, metavar="MSGS_PER_S", help="whole fleet (default 200)")
    add("--duration", type=float, metavar="S", help="seconds; 0 runs until stopped (default 30)")
    add("--seed", type=int, metavar="S")
    add("--sweeper-fraction", type=float, metavar="X", help="robots near singular poses (0.25)")
    add("--broken-fraction", type=float, metavar="X", help="readings with a NaN (0.01)")
    add("--malformed-fraction", type=float, metavar="X", help="malformed messages (0.005)")
    add("--degrade-after", type=float, metavar="S", help="one robot gets stuck near a singularity")
    add("--kafka-config", action="append", default=[], metavar="KEY=VALUE")
    fleet.set_defaults(handler=cmd_fleet)


def cmd_fleet(args: argparse.Namespace) -> int:
    """Publish until the duration ends or SIGTERM/SIGINT; print what was sent as JSON."""
    config = build_service_config(FleetConfig, service_flags(args), os.environ)
    stop = threading.Event()
    install_signals(stop)
    published = publish(config, stop)
    sys.stdout.write(orjson.dumps(published.summary()).decode() + "\n")
    return EXIT_OK
