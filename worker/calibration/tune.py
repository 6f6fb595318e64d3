"""Reject-threshold sweep (spec section 6.2) on calibrated scores, and calibration error.

Differences from the peer design, on purpose: the grid and the reject-rate band are
parameters, and when no candidate falls in the band the answer is "none" (the CLI exits
non-zero), never a silent default of 0.55. A non-finite confidence is always rejected.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

DEFAULT_GRID = tuple(round(0.10 + 0.05 * i, 2) for i in range(18))
DEFAULT_BAND = (0.05, 0.30)


@dataclass(frozen=True, slots=True)
class SweepRow:
    """One candidate threshold's numbers, rounded to 4 decimals."""

    threshold: float
    accuracy_on_accepted: float
    reject_rate: float
    coverage: float
    macro_f1: float


def macro_f1(truth: npt.NDArray[np.int64], predicted: npt.NDArray[np.int64], k: int) -> float:
    """Macro-F1 over all k classes, a class with no support and no prediction scoring 0."""
    scores = []
    for c in range(k):
        tp = int(np.sum((predicted == c) & (truth == c)))
        fp = int(np.sum((predicted == c) & (truth != c)))
        fn = int(np.sum((predicted != c) & (truth == c)))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def sweep(
    probabilities: npt.ArrayLike,
    labels: npt.ArrayLike,
    grid: Sequence[float] = DEFAULT_GRID,
) -> list[SweepRow]:
    """Reject rate, coverage, accepted accuracy and macro-F1 per candidate threshold."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    finite = np.asarray(np.isfinite(p).all(axis=1), dtype=bool)
    confidence = np.where(finite, np.max(np.where(finite[:, None], p, 0.0), axis=1), np.nan)
    predicted = np.argmax(np.where(finite[:, None], p, -np.inf), axis=1)
    rows = []
    for t in grid:
        accepted = finite & (confidence >= t)
        reject_rate = 1.0 - float(np.mean(accepted)) if y.size else 0.0
        if accepted.any():
            accuracy = float(np.mean(predicted[accepted] == y[accepted]))
            f1 = macro_f1(y[accepted], predicted[accepted], p.shape[1])
        else:
            accuracy = f1 = 0.0
        rows.append(
            SweepRow(
                round(float(t), 4),
                round(accuracy, 4),
                round(reject_rate, 4),
                round(1.0 - reject_rate, 4),
                round(f1, 4),
            )
        )
    return rows


def choose(rows: Sequence[SweepRow], band: tuple[float, float] = DEFAULT_BAND) -> SweepRow | None:
    """Highest accepted accuracy with the reject rate in the band (inclusive); ties: lowest t."""
    best: SweepRow | None = None
    for row in sorted(rows, key=lambda r: r.threshold):
        if band[0] <= row.reject_rate <= band[1] and (
            best is None or row.accuracy_on_accepted > best.accuracy_on_accepted
        ):
            best = row
    return best


def tuning_report(
    rows: Sequence[SweepRow], band: tuple[float, float], chosen: SweepRow | None
) -> dict[str, Any]:
    """The JSON document ``calibrate tune-threshold`` writes."""
    return {
        "best_threshold": None if chosen is None else chosen.threshold,
        "band": list(band),
        "grid": [r.threshold for r in rows],
        "sweep": [asdict(r) for r in rows],
    }


@dataclass(frozen=True, slots=True)
class Reliability:
    """Per-bin counts, mean confidence and accuracy; ECE over the bins."""

    edges: list[float]
    counts: list[int]
    confidence: list[float | None]
    accuracy: list[float | None]
    ece: float


def reliability(probabilities: npt.ArrayLike, labels: npt.ArrayLike, bins: int = 10) -> Reliability:
    """Equal-width confidence bins on [0, 1]; ECE = sum_b n_b / N * |acc_b - conf_b|.

    Rows with a non-finite probability are left out (they can never be accepted anyway).
    """
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    keep = np.asarray(np.isfinite(p).all(axis=1), dtype=bool)
    p, y = p[keep], y[keep]
    confidence = p.max(axis=1) if p.size else np.zeros(0)
    correct = (p.argmax(axis=1) == y) if p.size else np.zeros(0, dtype=bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    counts: list[int] = []
    mean_conf: list[float | None] = []
    accuracy: list[float | None] = []
    ece = 0.0
    for b in range(bins):
        member = index == b
        n = int(member.sum())
        counts.append(n)
        if n == 0:
            mean_conf.append(None)
            accuracy.append(None)
            continue
        c, a = float(confidence[member].mean()), float(correct[member].mean())
        mean_conf.append(c)
        accuracy.append(a)
        ece += n / confidence.shape[0] * abs(a - c)
    return Reliability(edges.tolist(), counts, mean_conf, accuracy, ece)
