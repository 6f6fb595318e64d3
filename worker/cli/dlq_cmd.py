"""``scm-worker dlq replay``: send dead letters back to the input topic once the cause is fixed."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from worker.cli.exit_codes import EXIT_FATAL, EXIT_OK
from worker.config import parse_kafka_pairs
from worker.dlq import plan_replay
from worker.errors import ConfigError
from worker.kafka.produce import produce_waiting
from worker.kafka.reader import read_topic


def register(commands: Any) -> None:
    """Add ``dlq replay``."""
    dlq = commands.add_parser("dlq", help="work with the dead-letter topic")
    sub = dlq.add_subparsers(dest="dlq_command", required=True, metavar="SUBCOMMAND")
    replay = sub.add_parser("replay", help="copy dead letters back to the input topic")
    add = replay.add_argument
    add("--bootstrap-servers", required=True, metavar="HOST:PORT")
    add("--from-topic", required=True, metavar="T", help="the dead-letter topic")
    add("--to-topic", required=True, metavar="T", help="usually the worker's input topic")
    add("--code", action="append", default=None, metavar="CODE", help="only this error code")
    add("--from-offset", type=int, metavar="N", help="same offset on every partition")
    add("--max-messages", type=int, metavar="N")
    add("--dry-run", action="store_true", help="count what would be sent, send nothing")
    add("--kafka-config", action="append", default=[], metavar="KEY=VALUE")
    replay.set_defaults(handler=cmd_replay)


def cmd_replay(args: argparse.Namespace) -> int:
    """Read to the end, send the selection, wait for every acknowledgement, print counts."""
    if args.from_topic == args.to_topic:
        raise ConfigError("--to-topic: expected a topic other than --from-topic, found the same")
    kafka = parse_kafka_pairs(args.kafka_config, "--kafka-config")
    records = read_topic(
        args.bootstrap_servers,
        args.from_topic,
        from_offset=args.from_offset,
        max_messages=args.max_messages,
        idle_timeout_s=2.0,
    )
    plan = plan_replay(records, frozenset(args.code) if args.code else None)
    failed: list[str] = []
    if not args.dry_run and plan.send:
        try:
            producer = Producer(
                {"bootstrap.servers": args.bootstrap_servers, "enable.idempotence": True, **kafka}
            )
        except KafkaException as exc:
            raise ConfigError(f"kafka client configuration: {exc.args[0].str()}") from exc

        def delivered(err: KafkaError | None, _: Message) -> None:
            if err is not None:
                failed.append(err.str())

        for key, value, headers in plan.send:
            produce_waiting(
                producer, args.to_topic, value, key, headers=headers, on_delivery=delivered
            )
        unacked = producer.flush(60)
        failed += ["not acknowledged"] * unacked
    report = {
        "read": dict(plan.read),
        "selected": dict(plan.selected),
        "sent": 0 if args.dry_run else len(plan.send) - len(failed),
        "failed": len(failed),
        "dry_run": args.dry_run,
    }
    sys.stdout.write(orjson.dumps(report).decode() + "\n")
    return EXIT_FATAL if failed else EXIT_OK
