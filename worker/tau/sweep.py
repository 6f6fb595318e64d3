"""The tau_infer sweep of zeroproofml (contract section 11), and operating-point selection.

Pure code. Curves are computed exactly as ``tau_infer_sweep_from_q_abs`` does: |Q| in float64,
"below" meaning strictly less than tau (a sorted binary search), empty subsets giving NaN, and
the same arithmetic (``fp_cens = 1 - below/n``), so numbers and files match byte for byte.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

Curves = dict[str, list[float]]


def _fraction_below(sorted_values: npt.NDArray[np.float64], tau: float) -> float:
    if sorted_values.size == 0:
        return math.nan
    return int(np.searchsorted(sorted_values, tau, side="left")) / sorted_values.size


def tau_sweep(q_abs: Any, is_in_range: Any, taus: Sequence[float]) -> Curves:
    """False-negative (in range rejected), false-positive (censored accepted), bottom rate."""
    q = np.asarray(q_abs, dtype=np.float64).reshape(-1)
    inside = np.asarray(is_in_range, dtype=bool).reshape(-1)
    if q.shape != inside.shape:
        raise ValueError(f"q_abs has {q.size} values but is_in_range has {inside.size}")
    if not np.isfinite(q).all():
        raise ValueError("q_abs must be finite (NaN would make the binary search meaningless)")
    everything = np.sort(q)
    in_range = np.sort(q[inside])
    censored = np.sort(q[~inside])
    taus_f = [float(t) for t in taus]
    return {
        "taus": taus_f,
        "fn_in": [_fraction_below(in_range, t) for t in taus_f],
        "fp_cens": [1.0 - _fraction_below(censored, t) for t in taus_f],
        "bottom_rate": [_fraction_below(everything, t) for t in taus_f],
    }


def sweep_json(curves: Curves, provenance: dict[str, Any] | None = None) -> str:
    """``<basename>.json`` as zeroproofml writes it (strict JSON: NaN or inf refuses)."""
    payload: dict[str, Any] = {"curves": curves}
    if provenance is not None:
        payload["provenance"] = provenance
    return json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n"


def sweep_markdown(curves: Curves) -> str:
    """``<basename>.md`` as zeroproofml writes it."""
    lines = [
        "# tau_infer sweep",
        "",
        "Strict gate: mark bottom when `|Q| < τ_infer`.",
        "",
        "| τ_infer | FN_in | FP_cens | bottom_rate |",
        "|---:|---:|---:|---:|",
    ]
    for tau, fn, fp, bottom in zip(
        curves["taus"], curves["fn_in"], curves["fp_cens"], curves["bottom_rate"], strict=True
    ):
        lines.append(f"| {tau:.3e} | {fn:.6f} | {fp:.6f} | {bottom:.6f} |")
    return "\n".join(lines) + "\n"


Strategy = Literal["safety", "coverage"]


@dataclass(frozen=True, slots=True)
class OperatingPoint:
    """The chosen tau and what it promises."""

    strategy: Strategy
    bound: float
    tau_infer: float
    fn_in: float
    fp_cens: float
    bottom_rate: float
    expected_acceptance_rate: float

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "strategy": self.strategy,
            "bound": self.bound,
            "tau_infer": self.tau_infer,
            "fn_in": self.fn_in,
            "fp_cens": self.fp_cens,
            "bottom_rate": self.bottom_rate,
            "expected_acceptance_rate": self.expected_acceptance_rate,
        }


def select_operating_point(curves: Curves, strategy: Strategy, bound: float) -> OperatingPoint:
    """Pick tau from the swept values.

    * ``safety``: the smallest tau whose false-accept rate (``fp_cens``) is at most ``bound``:
      as safe as required, rejecting as few in-range samples as possible.
    * ``coverage``: the largest tau whose false-reject rate (``fn_in``) is at most ``bound``:
      as much coverage as required, then as safe as possible.

    Raises ValueError when no swept tau meets the bound (widen the sweep, or relax it).
    """
    order = sorted(range(len(curves["taus"])), key=lambda i: curves["taus"][i])
    if strategy == "safety":
        chosen = next((i for i in order if curves["fp_cens"][i] <= bound), None)
    else:
        chosen = next((i for i in reversed(order) if curves["fn_in"][i] <= bound), None)
    if chosen is None:
        curve = "fp_cens" if strategy == "safety" else "fn_in"
        raise ValueError(
            f"no swept tau has {curve} <= {bound}; the best is "
            f"{min(c for c in curves[curve] if not math.isnan(c)):.6f}"
        )
    bottom = curves["bottom_rate"][chosen]
    return OperatingPoint(
        strategy,
        bound,
        curves["taus"][chosen],
        curves["fn_in"][chosen],
        curves["fp_cens"][chosen],
        bottom,
        1.0 - bottom,
    )
