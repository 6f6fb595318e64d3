"""``scm-worker bench``: the worker against its ceilings (ONNX Runtime, a plain client loop)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from worker.bench import PHASES
from worker.cli.demo_cmd import default_bundle_path
from worker.cli.exit_codes import EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:
    from worker.bench.suite import BenchSettings

# (messages, naive messages, backlog, seconds per latency level, seconds of ONNX Runtime,
#  rounds of the throughput phases)
FULL = (500_000, 3_000, 1_000_000, 10.0, 2.0, 3)
QUICK = (5_000, 200, 20_000, 1.5, 0.2, 1)


def register(commands: Any) -> None:
    """Add the ``bench`` command."""
    bench = commands.add_parser(
        "bench", help="measure throughput, latency and memory against the ceilings"
    )
    add = bench.add_argument
    add("--bundle", type=Path, metavar="DIR", help="default: the shipped robotics bundle")
    add("--messages", type=int, metavar="N", help=f"throughput messages (default {FULL[0]:,})")
    add(
        "--naive-messages",
        type=int,
        metavar="N",
        help=f"messages for the slow naive loop (default {FULL[1]:,})",
    )
    add("--backlog", type=int, metavar="N", help=f"memory-phase backlog (default {FULL[2]:,})")
    add("--latency-seconds", type=float, metavar="S", help="paced run per load level")
    add(
        "--rounds",
        type=int,
        metavar="N",
        help=f"passthrough, worker and naive loop take N turns; medians reported "
        f"(default {FULL[5]}, quick {QUICK[5]})",
    )
    add(
        "--worker-processes",
        type=int,
        metavar="N",
        help="scm-worker run --processes N for the worker drain and the paced levels, next to "
        "a one-process drain (default: the cores this machine lets us use)",
    )
    add("--bootstrap-servers", metavar="HOST:PORT", help="default: an embedded broker")
    add("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    add("--quick", action="store_true", help="small counts, under a minute (for make test)")
    add(
        "--phases",
        default=",".join(PHASES),
        metavar="LIST",
        help=f"comma-separated subset of {','.join(PHASES)}",
    )
    add("--no-progress", action="store_true", help="no progress bar on stderr")
    bench.set_defaults(handler=cmd_bench)


def settings_from_args(args: argparse.Namespace) -> BenchSettings | str:
    """Settings, or the usage error to print."""
    from worker.bench.kafka_io import INPUT_PARTITIONS
    from worker.bench.suite import BenchSettings  # worker.bench imports the CLI's demo data
    from worker.cli.supervisor import usable_cores

    phases = tuple(p.strip() for p in args.phases.split(",") if p.strip())
    unknown = sorted(set(phases) - set(PHASES))
    if unknown or not phases:
        return f"--phases: expected names from {','.join(PHASES)}, found {unknown or 'none'}"
    messages, naive, backlog, seconds, ort_seconds, rounds = QUICK if args.quick else FULL
    counts = {
        "--messages": messages if args.messages is None else args.messages,
        "--naive-messages": naive if args.naive_messages is None else args.naive_messages,
        "--backlog": backlog if args.backlog is None else args.backlog,
        "--rounds": rounds if args.rounds is None else args.rounds,
    }
    small = [flag for flag, value in counts.items() if value < 1]
    if small:
        return f"{small[0]}: expected a positive count"
    processes = usable_cores() if args.worker_processes is None else args.worker_processes
    if not 1 <= processes <= INPUT_PARTITIONS:
        return f"--worker-processes: expected 1 to {INPUT_PARTITIONS}, found {processes}"
    latency_seconds = seconds if args.latency_seconds is None else args.latency_seconds
    if not latency_seconds > 0:
        return f"--latency-seconds: expected a positive duration, found {latency_seconds}"
    if "latency" in phases and "worker" not in phases:
        phases = (*phases, "worker")  # the paced rates are shares of the measured capacity
    return BenchSettings(
        bundle=args.bundle or default_bundle_path(),
        messages=counts["--messages"],
        naive_messages=counts["--naive-messages"],
        backlog=counts["--backlog"],
        latency_seconds=latency_seconds,
        ort_seconds=ort_seconds,
        phases=phases,
        bootstrap_servers=args.bootstrap_servers,
        quick=args.quick,
        rounds=counts["--rounds"],
        worker_processes=processes,
    )


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the phases, print the table, write the JSON."""
    from worker.bench.progress import Progress
    from worker.bench.report import as_json, table
    from worker.bench.suite import run_suite

    settings = settings_from_args(args)
    if isinstance(settings, str):
        print(f"scm-worker bench: error: {settings}", file=sys.stderr)
        return EXIT_USAGE
    figures = run_suite(settings, Progress(enabled=not args.no_progress))
    doc = as_json(figures)
    print(table(doc))
    if args.json is not None:
        args.json.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    return EXIT_OK
