"""``scm-worker run``: the consumer-group worker."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import structlog

from worker.bundle import verify_bundle
from worker.cli.exit_codes import EXIT_OK
from worker.config import WorkerConfig, build_config, parse_kafka_pairs, read_config_file
from worker.inference import BundleRunner
from worker.kafka.clients import make_clients
from worker.logging import configure
from worker.loop import Worker

log = structlog.get_logger("worker.cli")


def register(commands: Any) -> None:
    """Add the ``run`` command; every flag also reads SCM_WORKER_<FLAG>."""
    run = commands.add_parser("run", help="consume feature messages and publish strict results")
    add = run.add_argument
    add("--config", type=Path, metavar="FILE", help="TOML or JSON file with the same keys")
    add("--bundle", type=Path, metavar="DIR")
    add("--bootstrap-servers", metavar="HOST:PORT")
    add("--group-id", metavar="G")
    add("--input-topic", metavar="T")
    add("--results-topic", metavar="T")
    add("--solver-topic", metavar="T")
    add("--dlq-topic", metavar="T")
    add("--on-bottom", choices=["solver", "reject"], help="default: solver")
    add("--on-fault", choices=["solver", "reject"], help="default: follows --on-bottom")
    add("--on-gap", choices=["accept", "reject", "solver"], help="default: accept")
    add("--max-batch", type=int, metavar="N", help="messages per inference call (default 512)")
    add("--max-wait-ms", type=int, metavar="MS", help="batch gathering wait (default 5)")
    add("--commit-interval-ms", type=int, metavar="MS", help="auto-commit period (default 1000)")
    add(
        "--max-in-flight",
        type=int,
        metavar="N",
        help="unacknowledged messages before partitions pause (default 50000)",
    )
    add("--max-message-bytes", type=int, metavar="N", help="larger messages are dead letters")
    add("--allow-unverified-legacy", action="store_true", default=None)
    add("--expect-digest", metavar="SHA256", help="refuse a bundle with another manifest digest")
    add(
        "--exactly-once",
        action="store_true",
        default=None,
        help="Kafka transactions; needs a broker that honours read_committed",
    )
    add("--transactional-id", metavar="ID", help="default: scm-worker-<group id>")
    add(
        "--kafka-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any librdkafka property, repeatable (SASL/SSL included)",
    )
    run.set_defaults(handler=cmd_run)


def config_from_args(args: argparse.Namespace) -> WorkerConfig:
    """Flags over environment over file over defaults, validated once."""
    flags = {
        k: v
        for k, v in vars(args).items()
        if k not in {"handler", "command", "config", "kafka_config", "log_level"}
    }
    flags["kafka_config"] = parse_kafka_pairs(args.kafka_config, "--kafka-config")
    file_values = read_config_file(args.config) if args.config else {}
    return build_config(flags, os.environ, file_values)


def cmd_run(args: argparse.Namespace) -> int:
    """Load and verify the bundle, then run until SIGTERM/SIGINT."""
    config = config_from_args(args)
    configure(os.environ.get("SCM_WORKER_LOG_LEVEL", config.log_level))
    bundle = verify_bundle(
        config.bundle,
        allow_unverified_legacy=config.allow_unverified_legacy,
        expected_digest=config.expect_digest,
    )
    runner = BundleRunner(bundle)
    for warning in runner.warnings:
        log.warning("bundle.warning", detail=warning)
    log.info(
        "worker.starting",
        config=config.redacted(),
        bundle_id=bundle.digest,
        adapter=runner.adapter.name,
    )
    stop = threading.Event()
    _install_signals(stop)
    consumer, producer = make_clients(config)
    worker = Worker(config, runner, consumer, producer)
    counters = worker.run(stop)
    log.info(
        "worker.stopped",
        consumed=counters.consumed,
        results=counters.results,
        dead_letters=counters.dead_letters,
    )
    return EXIT_OK


def _install_signals(stop: threading.Event) -> None:
    def graceful(signum: int, _: FrameType | None) -> None:
        log.info("worker.signal", signal=signal.Signals(signum).name)
        stop.set()
        if signum == signal.SIGINT:
            # A second Ctrl-C means "now": fall back to the default handler.
            signal.signal(signal.SIGINT, signal.SIG_DFL)

    signal.signal(signal.SIGTERM, graceful)
    signal.signal(signal.SIGINT, graceful)
