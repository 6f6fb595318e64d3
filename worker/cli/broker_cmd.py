"""``scm-worker broker``: the embedded Tansu broker on loopback, for development and demos."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from worker.cli.exit_codes import EXIT_OK
from worker.kafka.embedded import EmbeddedBroker, create_topics

DEFAULT_TOPICS = ("features", "results", "solver-requests", "dead-letters", "scm-events")


def register(commands: Any) -> None:
    """Add the ``broker`` command."""
    broker = commands.add_parser("broker", help="run the embedded Kafka-protocol broker")
    broker.add_argument(
        "--port",
        type=int,
        default=0,
        metavar="N",
        help="listen port on 127.0.0.1 (default: a free one)",
    )
    broker.add_argument(
        "--create-topics",
        nargs="*",
        metavar="TOPIC",
        default=None,
        help=f"create topics once ready (no names: {', '.join(DEFAULT_TOPICS)})",
    )
    broker.add_argument("--partitions", type=int, default=1, metavar="N")
    broker.set_defaults(handler=cmd_broker)


def cmd_broker(args: argparse.Namespace) -> int:
    """Start, announce ``bootstrap.servers=...`` on its own line, stop on SIGTERM/SIGINT."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with EmbeddedBroker(port=args.port) as broker:
        if args.create_topics is not None:
            create_topics(
                broker.bootstrap_servers,
                args.create_topics or DEFAULT_TOPICS,
                partitions=args.partitions,
            )
        print(f"bootstrap.servers={broker.bootstrap_servers}", flush=True)
        while not stop.is_set():
            if broker.process is not None and broker.process.poll() is not None:
                print("scm-worker: error: the broker process exited", file=sys.stderr)
                return 3
            stop.wait(0.5)
    return EXIT_OK
