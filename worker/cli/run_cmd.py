"""``scm-worker run``: the consumer-group worker."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import structlog

from worker.app import build_worker, settle_gc
from worker.bundle import verify_bundle
from worker.cli.exit_codes import EXIT_OK, exit_code_of
from worker.cli.supervisor import stop_when_orphaned, supervise
from worker.config import (
    WorkerConfig,
    build_config,
    explicit_settings,
    parse_kafka_pairs,
    read_config_file,
)
from worker.logging import configure
from worker.policy.apply import overrides, policy_values
from worker.policy.model import read_policy

log = structlog.get_logger("worker.cli")


def register(commands: Any) -> None:
    """Add the ``run`` command; every flag also reads SCM_WORKER_<FLAG>."""
    run = commands.add_parser("run", help="consume feature messages and publish strict results")
    add = run.add_argument
    add("--config", type=Path, metavar="FILE", help="TOML or JSON file with the same keys")
    add(
        "--policy",
        type=Path,
        metavar="POLICY",
        help="inference policy (policy.json); explicit flags override it; hot-reloaded",
    )
    add("--policy-poll-s", type=float, metavar="S", help="policy file check period (default 1)")
    add("--bundle", type=Path, metavar="DIR")
    add("--bootstrap-servers", metavar="HOST:PORT")
    add("--group-id", metavar="G")
    add("--input-topic", metavar="T")
    add("--results-topic", metavar="T")
    add("--solver-topic", metavar="T")
    add("--dlq-topic", metavar="T")
    add("--on-bottom", choices=["solver", "reject"], help="default: solver")
    add("--on-fault", choices=["solver", "reject"], help="default: follows --on-bottom")
    add("--on-mixed", choices=["solver", "reject"], help="default: follows --on-fault")
    add("--on-gap", choices=["accept", "reject", "solver"], help="default: accept")
    add("--max-batch", type=int, metavar="N", help="messages per inference call (default 512)")
    add(
        "--max-wait-ms",
        type=int,
        metavar="MS",
        help="how long an idle worker waits for a batch to gather (default 5); records queued "
        "while a batch ran are taken at once",
    )
    add(
        "--inference-threads",
        type=int,
        metavar="N",
        help="ONNX Runtime intra-op threads (default: one per core; set to the CPU limit)",
    )
    add("--commit-interval-ms", type=int, metavar="MS", help="auto-commit period (default 1000)")
    add(
        "--processes",
        type=int,
        metavar="N",
        help="worker processes in the group, one core each (default 1); the input topic "
        "needs at least N partitions",
    )
    add(
        "--max-in-flight",
        type=int,
        metavar="N",
        help="unacknowledged messages before partitions pause (default 50000)",
    )
    add("--max-message-bytes", type=int, metavar="N", help="larger messages are dead letters")
    add("--max-elements", type=int, metavar="N", help="numbers per message (default 65536)")
    add("--max-depth", type=int, metavar="N", help="nesting depth of an input (default 16)")
    add("--max-id-length", type=int, metavar="N", help="message/device id chars (default 128)")
    add("--max-context-bytes", type=int, metavar="N", help="serialized context (default 4096)")
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
    _monitoring_flags(run.add_argument_group("monitoring"))
    _direction_flags(run.add_argument_group("direction head"))
    run.set_defaults(handler=cmd_run)


def _monitoring_flags(mon: argparse._ArgumentGroup) -> None:
    add = mon.add_argument
    add(
        "--monitor-jsonl",
        type=Path,
        metavar="PATH",
        help="monitor events as JSONL (zeroproofml conventions), rotated by size",
    )
    add("--monitor-jsonl-max-bytes", type=int, metavar="N", help="rotate after (default 64 MiB)")
    add("--events-topic", metavar="T", help="publish monitor events for ops")
    add("--metrics-port", type=int, metavar="P", help="serve /metrics, /healthz, /readyz")
    add("--metrics-host", metavar="ADDR", help="address the metrics server binds (default 0.0.0.0)")
    add("--drift-window-s", type=float, metavar="S", help="tumbling window (default 60)")
    add(
        "--drift-threshold",
        type=float,
        metavar="X",
        help="acceptance change that matters (default 0.1)",
    )
    add(
        "--drift-baseline",
        type=float,
        metavar="RATE",
        help="expected acceptance rate (default: a warm-up window)",
    )
    add(
        "--fault-threshold",
        type=float,
        metavar="X",
        help="fault-rate rise that matters (default 0.05)",
    )
    add(
        "--fault-baseline",
        type=float,
        metavar="RATE",
        help="expected fault rate (default: the warm-up window)",
    )
    add(
        "--drift-alpha",
        type=float,
        metavar="P",
        help="significance level of the exact binomial test (default 1e-6)",
    )
    add(
        "--drift-min-samples",
        type=int,
        metavar="N",
        help="windows with fewer samples decide nothing (default 30)",
    )
    add(
        "--reference-drift-threshold",
        type=float,
        metavar="X",
        help="also emit zeroproofml's batch-to-batch acceptance-rate-drift events",
    )
    add(
        "--stall-timeout-s",
        type=float,
        metavar="S",
        help="/healthz fails after this long without progress (default 30)",
    )


def _direction_flags(group: argparse._ArgumentGroup) -> None:
    add = group.add_argument
    add(
        "--direction-head",
        type=Path,
        metavar="FILE.onnx",
        help="direction head: logits (batch, 2|3) for below/[in_range]/above",
    )
    add("--direction-head-input", metavar="NAME", help="bundle input the head reads")
    add(
        "--calibrator-store",
        type=Path,
        metavar="DIR",
        help="calibrator store bound to this bundle and head (`calibrate fit`)",
    )
    add(
        "--direction-reject-threshold",
        type=float,
        metavar="X",
        help="calibrated confidence below X gives class 1, unknown (default 0)",
    )


def config_from_args(args: argparse.Namespace) -> WorkerConfig:
    """Flags over environment over file over policy over defaults, validated once."""
    flags = {
        k: v
        for k, v in vars(args).items()
        if k not in {"handler", "command", "config", "kafka_config", "log_level", "policy"}
    }
    flags["kafka_config"] = parse_kafka_pairs(args.kafka_config, "--kafka-config")
    file_values = read_config_file(args.config) if args.config else {}
    if args.policy is None:
        return build_config(flags, os.environ, file_values)
    policy, _ = read_policy(args.policy)
    layer = policy_values(policy, args.policy)
    explicit = explicit_settings(flags, os.environ, file_values)
    for key, value in overrides(layer, explicit).items():
        log.warning(
            "policy.override",
            setting=key,
            policy_value=str(layer[key]),
            value=str(value),
            policy=str(args.policy),
        )
    return build_config(flags, os.environ, {**layer, "policy_file": args.policy, **file_values})


def cmd_run(args: argparse.Namespace) -> int:
    """Load and verify the bundle, then run until SIGTERM/SIGINT."""
    config = config_from_args(args)
    level = os.environ.get("SCM_WORKER_LOG_LEVEL", config.log_level)
    configure(level)
    if config.processes == 1:
        return run_one(config)
    # One clear line for a bad bundle, before N children would each print their own.
    verify_bundle(
        config.bundle,
        allow_unverified_legacy=config.allow_unverified_legacy,
        expected_digest=config.expect_digest,
    )
    stop = threading.Event()
    install_signals(stop)
    return supervise(config, run_child, stop, level)


def run_child(config: WorkerConfig, index: int, level: str, supervisor: int) -> None:
    """A ``--processes`` child: one worker, its log lines tagged with its index."""
    configure(level)
    structlog.contextvars.bind_contextvars(process=index)
    sys.exit(exit_code_of(lambda: run_one(config, supervisor)))


def run_one(config: WorkerConfig, supervisor: int | None = None) -> int:
    """One worker until SIGTERM/SIGINT (or, as a child, until its supervisor is gone)."""
    worker = build_worker(config)
    settle_gc()
    stop = threading.Event()
    install_signals(stop)
    if supervisor is not None:
        stop_when_orphaned(stop, supervisor)
    counters = worker.run(stop)
    log.info(
        "worker.stopped",
        consumed=counters.consumed,
        results=counters.results,
        dead_letters=counters.dead_letters,
    )
    return EXIT_OK


def install_signals(stop: threading.Event) -> None:
    """SIGTERM and the first Ctrl-C finish the work in hand; a second Ctrl-C exits at once."""

    def graceful(signum: int, _: FrameType | None) -> None:
        log.info("worker.signal", signal=signal.Signals(signum).name)
        stop.set()
        if signum == signal.SIGINT:
            # A second Ctrl-C means "now": fall back to the default handler.
            signal.signal(signal.SIGINT, signal.SIG_DFL)

    signal.signal(signal.SIGTERM, graceful)
    signal.signal(signal.SIGINT, graceful)
