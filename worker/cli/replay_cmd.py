"""``scm-worker replay``: score recorded feature messages offline; capture |Q| for sweeps."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path
from typing import Any

from worker.bundle import verify_bundle
from worker.cli.exit_codes import EXIT_OK
from worker.errors import ConfigError
from worker.inference import BundleRunner
from worker.inference.head import DirectionHeadRunner
from worker.kafka.reader import read_topic
from worker.replay import ReplayRun, from_file, progress


def register(commands: Any) -> None:
    """Add ``replay``."""
    replay = commands.add_parser("replay", help="run a bundle over recorded messages")
    replay.add_argument("--bundle", required=True, type=Path, metavar="DIR")
    source = replay.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-topic", metavar="T")
    source.add_argument("--from-file", type=Path, metavar="F.jsonl")
    replay.add_argument("--bootstrap-servers", metavar="HOST:PORT")
    start = replay.add_mutually_exclusive_group()
    start.add_argument(
        "--from-offset", type=int, metavar="N", help="same offset on every partition"
    )
    start.add_argument("--from-time", metavar="TIME", help="epoch seconds or ISO 8601")
    replay.add_argument("--max-messages", type=int, metavar="N")
    replay.add_argument("--out", required=True, type=Path, metavar="RUN_DIR")
    replay.add_argument("--allow-unverified-legacy", action="store_true")
    replay.add_argument("--expect-digest", metavar="SHA256")
    replay.add_argument(
        "--direction-head",
        type=Path,
        metavar="FILE.onnx",
        help="also save the head's logits (head_logits.npy) for `calibrate fit`",
    )
    replay.add_argument("--direction-head-input", metavar="NAME", help="bundle input it reads")
    replay.set_defaults(handler=cmd_replay)


def _epoch_ms(value: str) -> int:
    try:
        return int(float(value) * 1000)
    except ValueError:
        pass
    try:
        return int(datetime.fromisoformat(value).timestamp() * 1000)
    except ValueError as exc:
        raise ConfigError(
            f"--from-time: expected epoch seconds or ISO 8601, found {value!r}"
        ) from exc


def cmd_replay(args: argparse.Namespace) -> int:
    """Write RUN_DIR/outputs.npz, q_abs.npy, dead_letters.jsonl and run.json."""
    bundle = verify_bundle(
        args.bundle,
        allow_unverified_legacy=args.allow_unverified_legacy,
        expected_digest=args.expect_digest,
    )
    runner = BundleRunner(bundle, capture_q=True)
    head = None
    if args.direction_head is not None:
        head = DirectionHeadRunner(args.direction_head, runner.inputs, args.direction_head_input)
    run = ReplayRun(runner, head)
    if args.from_file is not None:
        if not args.from_file.is_file():
            raise ConfigError(f"--from-file {args.from_file}: expected a file, found nothing")
        records = from_file(args.from_file, args.max_messages)
        source = {"file": str(args.from_file)}
    else:
        if not args.bootstrap_servers:
            raise ConfigError("--from-topic: expected --bootstrap-servers as well, found none")
        from_time = _epoch_ms(args.from_time) if args.from_time else None
        records = read_topic(
            args.bootstrap_servers,
            args.from_topic,
            from_offset=args.from_offset,
            from_time_ms=from_time,
            max_messages=args.max_messages,
        )
        source = {
            "topic": args.from_topic,
            "bootstrap_servers": args.bootstrap_servers,
            "from_offset": args.from_offset,
            "from_time": args.from_time,
        }
    run.feed(progress(records))
    summary = run.write(args.out, source)
    print(
        f"replayed {summary['messages']} messages: {summary['scored']} scored, "
        f"{summary['dead_letters']} dead letters, |Q| "
        f"{'captured' if summary['q_abs_available'] else 'not readable from this graph'} "
        f"-> {args.out}"
    )
    return EXIT_OK
