"""``scm-worker demo``: the whole system on the embedded broker, or ``--offline`` without Kafka.

The default runs a simulated fleet, the worker and the reference solver together and ties the
topics out (worker/demo/). ``--offline`` shows what strict inference does to a batch of fleet
readings (accepted, gap, fault and semantic bottoms) with no broker at all.
"""

from __future__ import annotations

import argparse
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from worker.arm import damped_least_squares
from worker.bundle import verify_bundle
from worker.cli.exit_codes import EXIT_OK
from worker.demo.run import DemoSettings, run_demo
from worker.fleet.simulate import simulate_readings
from worker.inference import BundleRunner

DEFAULT_BUNDLE = "reference_robotics_seed7"


def default_bundle_path() -> Path:
    """The robotics bundle shipped with the package (zeroproofml 0.6.1 reference deployment)."""
    return Path(str(files("worker") / "data" / "bundles" / DEFAULT_BUNDLE))


def register(commands: Any) -> None:
    """Add the ``demo`` command."""
    demo = commands.add_parser(
        "demo", help="fleet, worker and solver on the embedded broker, with a live view"
    )
    add = demo.add_argument
    add("--bundle", type=Path, default=None, metavar="DIR", help="default: the shipped bundle")
    add("--duration", type=float, default=30.0, metavar="S", help="fleet publishing time (30)")
    add("--rate", type=float, default=2000.0, metavar="MSGS_PER_S", help="fleet rate (2000)")
    add("--devices", type=int, default=20, metavar="N", help="robots in the fleet (20)")
    add("--seed", type=int, default=7)
    add("--out", type=Path, default=Path("demo-out"), metavar="DIR", help="report and logs")
    add(
        "--bootstrap-servers",
        metavar="HOST:PORT",
        help="use this Kafka instead of starting the embedded broker (topics get a suffix)",
    )
    add("--live", action=argparse.BooleanOptionalAction, default=None, help="default: on a TTY")
    add("--offline", action="store_true", help="no Kafka: one batch through the bundle")
    add("--samples", type=int, default=20_000, metavar="N", help="--offline batch size")
    demo.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the Kafka demo (or the offline one) and return its verdict as the exit code."""
    if args.offline:
        return cmd_offline(args)
    settings = DemoSettings(
        bundle=args.bundle or default_bundle_path(),
        out=args.out,
        duration_s=args.duration,
        rate=args.rate,
        devices=args.devices,
        seed=args.seed,
        bootstrap=args.bootstrap_servers,
        live=args.live,
    )
    return run_demo(settings)


def cmd_offline(args: argparse.Namespace) -> int:
    """Print a summary that a new user can read in ten seconds."""
    bundle_dir = args.bundle or default_bundle_path()
    runner = BundleRunner(verify_bundle(bundle_dir))
    readings = simulate_readings(args.samples, np.random.default_rng(args.seed))
    started = time.perf_counter()
    result = runner.run({runner.inputs[0].name: readings})
    elapsed = time.perf_counter() - started

    per_sample = {
        name: result.per_sample(name)
        for name in ("bottom_mask", "gap_mask", "fault_mask", "semantic_bottom_mask")
    }
    accepted = ~per_sample["bottom_mask"]
    finite = np.isfinite(readings).all(axis=1) & accepted
    error = np.abs(result.decoded[finite] - damped_least_squares(readings[finite]))
    n = len(readings)

    def line(label: str, count: int) -> str:
        return f"  {label:<34}{count:>8}  {count / max(n, 1):7.2%}"

    print(f"scm-worker demo: {n} simulated RR-arm readings through {bundle_dir}")
    print(
        f"  bundle {runner.bundle.digest[:16]}…  adapter {runner.adapter.name}  "
        f"{n / max(elapsed, 1e-9):,.0f} samples/s"
    )
    print(line("accepted (finite answer)", int(accepted.sum())))
    print(line("  of which in the gap band", int((accepted & per_sample["gap_mask"]).sum())))
    print(line("bottom -> analytic solver", int(per_sample["bottom_mask"].sum())))
    print(line("  fault (non-finite reading)", int(per_sample["fault_mask"].sum())))
    print(line("  semantic (|Q| < tau_infer)", int(per_sample["semantic_bottom_mask"].sum())))
    if error.size:
        print(
            f"  accepted vs damped least squares: median |err| {np.median(error):.4f} rad, "
            f"p99 {np.quantile(error, 0.99):.4f} rad"
        )
    bottom_rows = result.decoded[per_sample["bottom_mask"]]
    leaked = int(np.isfinite(bottom_rows).sum())
    print(f"  bottoms published as numbers: {leaked}")
    return EXIT_OK
