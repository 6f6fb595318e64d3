"""``scm-worker calibrate fit|tune-threshold|report``: calibrators for a direction head."""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from worker.calibration.calibrators import Calibrator, softmax
from worker.calibration.dataset import Labelled, load_labelled
from worker.calibration.fit import Eligibility, device_report, fit_isotonic, fit_temperature
from worker.calibration.report import reliability_svg
from worker.calibration.store import load_store, write_store
from worker.calibration.tune import (
    DEFAULT_BAND,
    DEFAULT_GRID,
    choose,
    reliability,
    sweep,
    tuning_report,
)
from worker.cli.exit_codes import EXIT_INVALID, EXIT_OK
from worker.errors import ConfigError


def register(commands: Any) -> None:
    """Add the ``calibrate`` command group."""
    group = commands.add_parser("calibrate", help="fit, tune and report direction-head calibration")
    sub = group.add_subparsers(dest="calibrate_command", required=True, metavar="SUBCOMMAND")

    fit = sub.add_parser("fit", help="fit a calibrator store from a replay and labels")
    _data_args(fit)
    fit.add_argument("--method", required=True, choices=["temperature", "isotonic"])
    fit.add_argument("--out", required=True, type=Path, metavar="STORE")
    fit.add_argument(
        "--route",
        choices=["probabilities", "logits"],
        default="probabilities",
        help="temperature on ln(max(p, 1e-12)) as specified (default), or straight on logits",
    )
    fit.add_argument("--min-samples", type=int, default=200, metavar="N")
    fit.add_argument("--min-days", type=int, default=3, metavar="N")
    fit.add_argument(
        "--min-distinct-labels",
        type=int,
        default=3,
        metavar="N",
        help="capped at the head's class count (default 3)",
    )
    fit.set_defaults(handler=cmd_fit)

    tune = sub.add_parser("tune-threshold", help="sweep reject thresholds on calibrated scores")
    _data_args(tune)
    tune.add_argument("--store", type=Path, metavar="STORE", help="default: raw softmax")
    tune.add_argument(
        "--grid",
        metavar="T,T,...|START:STOP:STEP",
        help="candidate thresholds (default 0.10:0.95:0.05)",
    )
    tune.add_argument(
        "--band",
        metavar="LO:HI",
        help=f"accepted reject-rate band, inclusive (default {DEFAULT_BAND[0]}:{DEFAULT_BAND[1]})",
    )
    tune.add_argument("--out", type=Path, metavar="FILE.json", help="write the sweep report")
    tune.set_defaults(handler=cmd_tune)

    report = sub.add_parser("report", help="reliability diagrams and ECE before/after (SVG)")
    _data_args(report)
    report.add_argument("--store", required=True, type=Path, metavar="STORE")
    report.add_argument("--out", required=True, type=Path, metavar="DIR")
    report.add_argument("--bins", type=int, default=10, metavar="N")
    report.set_defaults(handler=cmd_report)


def _data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--replay",
        required=True,
        type=Path,
        metavar="RUN_DIR",
        help="`scm-worker replay --direction-head ...` output",
    )
    parser.add_argument(
        "--labels",
        required=True,
        type=Path,
        metavar="FILE",
        help="JSON lines {message_id, label} or CSV message_id,label",
    )


def _fit(method: str, logits: np.ndarray, truth: np.ndarray, route: str) -> Calibrator:
    if method == "temperature":
        return fit_temperature(logits, truth, "logits" if route == "logits" else "probabilities")
    return fit_isotonic(logits, truth)


def cmd_fit(args: argparse.Namespace) -> int:
    """Global calibrator on every labelled row; a device's own only past the eligibility gate."""
    for flag in ("min_samples", "min_days", "min_distinct_labels"):
        if getattr(args, flag) < 1:
            raise ConfigError(
                f"--{flag.replace('_', '-')}: expected at least 1, found {getattr(args, flag)}"
            )
    data = load_labelled(args.replay, args.labels)
    if args.method == "isotonic" and args.route == "logits":
        raise ConfigError("--route logits: expected --method temperature, found isotonic")
    rules = Eligibility(args.min_samples, args.min_days, args.min_distinct_labels).capped(
        len(data.labels)
    )
    global_calibrator = _fit(args.method, data.logits, data.truth, args.route)
    devices: dict[str, Calibrator] = {}
    reports = []
    ids = np.asarray(data.device_ids)
    for device in sorted(set(data.device_ids)):
        rows = np.flatnonzero(ids == device)
        report = device_report(
            device, data.truth[rows].tolist(), [data.stamps[r] for r in rows], rules
        )
        reports.append(report)
        if report.eligible:
            devices[device] = _fit(args.method, data.logits[rows], data.truth[rows], args.route)
    manifest = {
        "bundle_digest": data.bundle_digest,
        "head_sha256": data.head_sha256,
        "classes": list(data.labels),
        "method": args.method,
        "route": global_calibrator.route,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "eligibility": {
            "min_samples": rules.min_samples,
            "min_days": rules.min_days,
            "min_distinct_labels": rules.min_distinct_labels,
        },
    }
    write_store(args.out, manifest, global_calibrator, devices)
    described = (
        f"T={global_calibrator.to_json()['temperature']}"
        if args.method == "temperature"
        else f"{len(data.labels)} knot lists"
    )
    print(
        f"calibrator store -> {args.out}: global {args.method} ({described}) on "
        f"{data.truth.size} labelled rows; own calibrator for {len(devices)} of "
        f"{len(reports)} devices"
    )
    for r in reports:
        verdict = "own calibrator" if r.eligible else "global"
        print(
            f"  {r.device_id}: {r.samples} samples, {r.days} days, "
            f"{r.distinct_labels} labels -> {verdict}"
        )
    return EXIT_OK


def _floats(text: str, flag: str) -> list[float]:
    try:
        if ":" in text:
            start, stop, step = (float(v) for v in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError("expected START <= STOP and STEP > 0")
            count = math.floor((stop - start) / step + 1e-9) + 1
            return [round(start + i * step, 10) for i in range(count)]
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise ConfigError(f"{flag}: expected numbers, found {text!r}") from exc


def _grid_and_band(args: argparse.Namespace) -> tuple[list[float], tuple[float, float]]:
    grid = _floats(args.grid, "--grid") if args.grid else list(DEFAULT_GRID)
    if not grid or not all(0.0 <= t <= 1.0 for t in grid):
        raise ConfigError(f"--grid: expected thresholds in [0, 1], found {grid}")
    band = DEFAULT_BAND
    if args.band:
        parts = _floats(args.band.replace(":", ","), "--band")
        if len(parts) != 2 or not 0.0 <= parts[0] <= parts[1] <= 1.0:
            raise ConfigError(f"--band: expected LO:HI with 0 <= LO <= HI <= 1, found {args.band}")
        band = (parts[0], parts[1])
    return grid, band


def _scores(data: Labelled, store_path: Path | None) -> np.ndarray:
    if store_path is None:
        return softmax(data.logits)
    store = load_store(
        store_path,
        bundle_digest=data.bundle_digest,
        head_sha256=data.head_sha256,
        classes=list(data.labels),
    )
    return data.calibrated(store)[0]


def cmd_tune(args: argparse.Namespace) -> int:
    """The sweep; exits 1 when no threshold keeps the reject rate inside the band."""
    grid, band = _grid_and_band(args)
    data = load_labelled(args.replay, args.labels)
    rows = sweep(_scores(data, args.store), data.truth, grid)
    chosen = choose(rows, band)
    if args.out is not None:
        args.out.write_text(json.dumps(tuning_report(rows, band, chosen), indent=2) + "\n")
    print("threshold  reject_rate  accuracy_on_accepted  macro_f1")
    for r in rows:
        print(
            f"{r.threshold:9.4f}  {r.reject_rate:11.4f}  {r.accuracy_on_accepted:20.4f}  "
            f"{r.macro_f1:8.4f}"
        )
    if chosen is None:
        rates = sorted({r.reject_rate for r in rows})
        print(
            f"scm-worker: error: no threshold qualifies: expected a reject rate in "
            f"[{band[0]}, {band[1]}] for some candidate, found rates {rates[0]}..{rates[-1]} "
            f"over {len(rows)} candidates (widen --band or change --grid)",
            file=sys.stderr,
        )
        return EXIT_INVALID
    print(
        f"best threshold: {chosen.threshold} (reject rate {chosen.reject_rate}, "
        f"accuracy on accepted {chosen.accuracy_on_accepted})"
    )
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    """DIR/reliability.svg and DIR/calibration_report.json."""
    data = load_labelled(args.replay, args.labels)
    if args.bins < 1:
        raise ConfigError(f"--bins: expected at least 1, found {args.bins}")
    before = reliability(softmax(data.logits), data.truth, args.bins)
    after_scores = _scores(data, args.store)
    after = reliability(after_scores, data.truth, args.bins)
    args.out.mkdir(parents=True, exist_ok=True)
    svg = args.out / "reliability.svg"
    svg.write_text(reliability_svg(before, after, f"({data.truth.size} labelled rows)"))
    report = {
        "rows": int(data.truth.size),
        "store": str(args.store),
        "ece_before": round(before.ece, 6),
        "ece_after": round(after.ece, 6),
        "before": asdict(before),
        "after": asdict(after),
    }
    (args.out / "calibration_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"ECE {before.ece:.4f} -> {after.ece:.4f} on {data.truth.size} rows; picture: {svg}")
    return EXIT_OK
