"""``scm-worker tau sweep``: zeroproofml's tau_infer sweep, a picture, and an operating point."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from worker.cli.exit_codes import EXIT_OK
from worker.errors import ConfigError
from worker.tau.plot import sweep_svg
from worker.tau.sweep import select_operating_point, sweep_json, sweep_markdown, tau_sweep


def register(commands: Any) -> None:
    """Add ``tau sweep``."""
    tau = commands.add_parser("tau", help="tau_infer sweeps and operating points")
    sub = tau.add_subparsers(dest="tau_command", required=True, metavar="SUBCOMMAND")
    sweep = sub.add_parser("sweep", help="FN/FP/bottom-rate curves over tau_infer")
    sweep.add_argument(
        "--q-abs",
        required=True,
        type=Path,
        metavar="FILE",
        help=".npy, .npz, .json (list or {'q_abs': [...]}) or one number a line",
    )
    sweep.add_argument(
        "--in-range",
        required=True,
        type=Path,
        metavar="FILE",
        help="same formats; true/1 where the sample is in range (not censored)",
    )
    sweep.add_argument(
        "--taus",
        required=True,
        nargs="+",
        metavar="TAU",
        help="values, or logspace:START_EXP:STOP_EXP:N (e.g. logspace:-6:0:13)",
    )
    sweep.add_argument("--out", required=True, type=Path, metavar="DIR")
    sweep.add_argument("--basename", default="tau_infer_sweep")
    sweep.add_argument(
        "--select",
        choices=["safety", "coverage"],
        help="also pick an operating point: safety-first or coverage-first",
    )
    sweep.add_argument(
        "--bound",
        type=float,
        default=0.01,
        metavar="X",
        help="max FP_cens (safety) or max FN_in (coverage), default 0.01",
    )
    sweep.set_defaults(handler=cmd_sweep)


def parse_taus(values: list[str]) -> list[float]:
    """Literal values or ``logspace:a:b:n``."""
    taus: list[float] = []
    for value in values:
        if value.startswith("logspace:"):
            try:
                _, start, stop, count = value.split(":")
                taus += [float(t) for t in np.logspace(float(start), float(stop), int(count))]
            except ValueError as exc:
                raise ConfigError(
                    f"--taus: expected logspace:START:STOP:N, found {value!r}"
                ) from exc
        else:
            try:
                taus.append(float(value))
            except ValueError as exc:
                raise ConfigError(f"--taus: expected numbers, found {value!r}") from exc
    return taus


def load_vector(path: Path, key: str) -> np.ndarray:
    """One flat array from .npy/.npz/.json/text."""
    try:
        if path.suffix == ".npy":
            return np.asarray(np.load(path, allow_pickle=False)).reshape(-1)
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                name = key if key in data.files else data.files[0]
                return np.asarray(data[name]).reshape(-1)
        if path.suffix == ".json":
            loaded = json.loads(path.read_text())
            return np.asarray(loaded[key] if isinstance(loaded, dict) else loaded).reshape(-1)
        words = path.read_text().split()
        if key == "is_in_range":
            return np.asarray([w.lower() in ("1", "true", "yes") for w in words])
        return np.asarray([float(w) for w in words])
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise ConfigError(f"{path}: expected an array of {key}, found: {exc}") from exc


def _write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def cmd_sweep(args: argparse.Namespace) -> int:
    """Write <basename>.json/.md (zeroproofml's files), .svg, and operating_point.json."""
    q_abs = load_vector(args.q_abs, "q_abs").astype(np.float64)
    in_range = load_vector(args.in_range, "is_in_range").astype(bool)
    try:
        curves = tau_sweep(q_abs, in_range, parse_taus(args.taus))
    except ValueError as exc:
        raise ConfigError(f"tau sweep: {exc}") from exc
    provenance = {
        "n": int(q_abs.size),
        "source": "scm-worker tau sweep",
        "q_abs_file": args.q_abs.name,
        "q_abs_sha256": hashlib.sha256(args.q_abs.read_bytes()).hexdigest(),
        "in_range_sha256": hashlib.sha256(args.in_range.read_bytes()).hexdigest(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        payload = sweep_json(curves, provenance)
    except ValueError as exc:  # NaN curve (an empty subset) or infinite tau: zeroproofml refuses
        raise ConfigError(
            f"tau sweep: the curves are not strict JSON ({exc}); "
            "both in-range and censored samples are needed"
        ) from exc
    point = None
    if args.select:
        try:
            point = select_operating_point(curves, args.select, args.bound)
        except ValueError as exc:
            raise ConfigError(f"--select {args.select} --bound {args.bound}: {exc}") from exc
    _write(args.out / f"{args.basename}.json", payload)
    _write(args.out / f"{args.basename}.md", sweep_markdown(curves))
    _write(args.out / f"{args.basename}.svg", sweep_svg(curves, point))
    if point is not None:
        record = {**point.as_dict(), "sweep_sha256": hashlib.sha256(payload.encode()).hexdigest()}
        _write(
            args.out / "operating_point.json", json.dumps(record, indent=2, sort_keys=True) + "\n"
        )
        print(
            f"operating point ({point.strategy}, bound {point.bound}): tau_infer="
            f"{point.tau_infer:.6g}, expected acceptance {point.expected_acceptance_rate:.4f}"
        )
    print(f"wrote {args.out / args.basename}.json, .md, .svg")
    return EXIT_OK
