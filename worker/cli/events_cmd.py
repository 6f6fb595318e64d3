"""``scm-worker events tail``: the events topic, one readable line an event, alerts highlighted."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import uuid
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson
from confluent_kafka import Consumer

from worker.cli.exit_codes import EXIT_OK

ALERTS = {"acceptance-drift-alert", "fault-rate-alert"}
_RED, _GREEN, _BOLD, _RESET = "\033[31m", "\033[32m", "\033[1m", "\033[0m"


def register(commands: Any) -> None:
    """Add ``events tail``."""
    events = commands.add_parser("events", help="read the monitor events topic")
    sub = events.add_subparsers(dest="events_command", required=True, metavar="SUBCOMMAND")
    tail = sub.add_parser("tail", help="print events as they arrive")
    tail.add_argument("--bootstrap-servers", required=True, metavar="HOST:PORT")
    tail.add_argument("--topic", required=True, metavar="T")
    tail.add_argument("--from-beginning", action="store_true")
    tail.add_argument(
        "--max-events",
        type=int,
        default=None,
        metavar="N",
        help="stop after N events (scripts, tests)",
    )
    tail.add_argument(
        "--idle-exit-s",
        type=float,
        default=None,
        metavar="S",
        help="stop after S seconds without events",
    )
    tail.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    tail.set_defaults(handler=cmd_tail)


def render(event: dict[str, Any], color: bool) -> str:
    """One line for a person; alerts stand out."""
    name = str(event.get("event", "?"))
    if name in ALERTS:
        state = event.get("state", "?")
        metric = event.get("metric", "accept_rate")
        start = datetime.fromtimestamp(float(event.get("window_start", 0)), UTC)
        text = (
            f"ALERT {state.upper():<8} {name} {event.get('scope')} {metric}="
            f"{event.get(metric, float('nan')):.3f} baseline={event.get('baseline', 0):.3f} "
            f"delta={event.get('delta', 0):+.3f} n={event.get('n')} "
            f"p={event.get('p_value', float('nan')):.1e} window={start:%H:%M:%S}"
        )
        if color:
            text = f"{_BOLD}{_RED if state == 'raised' else _GREEN}{text}{_RESET}"
        return text
    details = " ".join(
        f"{k}={v}" for k, v in sorted(event.items()) if k not in ("event", "bundle_id")
    )
    return f"      {name:<26} {details}"


def cmd_tail(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Print events until Ctrl-C (or the given stop condition)."""
    stream = out or sys.stdout
    color = args.color == "always" or (args.color == "auto" and stream.isatty())
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap_servers,
            "group.id": f"scm-events-tail-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest" if args.from_beginning else "latest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    consumer.subscribe([args.topic])
    seen, idle = 0, 0.0
    try:
        while not stop.is_set():
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                idle += 0.5
                if args.idle_exit_s is not None and idle >= args.idle_exit_s:
                    break
                continue
            idle = 0.0
            try:
                event = orjson.loads(message.value() or b"{}")
            except orjson.JSONDecodeError:
                event = {"event": "unreadable", "bytes": len(message.value() or b"")}
            print(render(event, color), file=stream, flush=True)
            seen += 1
            if args.max_events is not None and seen >= args.max_events:
                break
    finally:
        consumer.close()
    return EXIT_OK
