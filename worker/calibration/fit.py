"""Fitting calibrators (pure NumPy): temperature by NLL grid search, isotonic by PAV.

Temperature follows spec section 5.2 exactly: start at T = 1, coarse pass 0.1..5.0 step 0.1,
fine pass max(0.01, best - 0.1)..best + 0.1 step 0.01, a candidate wins only with a strictly
lower NLL, the result rounded to 4 decimals. Isotonic is the one-vs-rest fit of section 5.3
(increasing, clipped to [0, 1]), keeping the first and last point of each flat run as knots,
which is what scikit-learn stores; scikit-learn itself is not needed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from worker.calibration.calibrators import EPS, Isotonic, Route, Temperature, softmax

Floats = npt.NDArray[np.float64]


def nll(probabilities: Floats, labels: npt.NDArray[np.int64]) -> float:
    """Mean negative log-likelihood of the true column, floored at 1e-12."""
    picked = probabilities[np.arange(labels.shape[0]), labels]
    return float(-np.mean(np.log(np.maximum(picked, EPS))))


def grid_search(objective: Callable[[float], float]) -> float:
    """The spec's two-pass search over T; strict improvement only; 4 decimals."""
    best = 1.0
    best_nll = objective(best)
    for k in range(1, 51):
        t = k / 10
        value = objective(t)
        if value < best_nll:
            best, best_nll = t, value
    start = max(0.01, best - 0.1)
    for j in range(21):
        t = round(start + j * 0.01, 10)
        if t > best + 0.1 + 1e-9:
            break
        value = objective(t)
        if value < best_nll:
            best, best_nll = t, value
    return round(best, 4)


def _checked(scores: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[Floats, npt.NDArray[np.int64]]:
    z = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if z.ndim != 2 or y.shape != (z.shape[0],) or z.shape[0] == 0:
        raise ValueError(
            f"expected scores (N, K) and labels (N,), N > 0; found {z.shape}, {y.shape}"
        )
    if y.min() < 0 or y.max() >= z.shape[1]:
        raise ValueError(f"labels: expected column indices in [0, {z.shape[1]}), found {y}")
    return z, y


def fit_temperature_probabilities(
    probabilities: npt.ArrayLike, labels: npt.ArrayLike
) -> Temperature:
    """Spec section 5.2 exactly: NLL of ``Temperature(T).apply(p)`` over the grid."""
    p, y = _checked(probabilities, labels)
    return Temperature(grid_search(lambda t: nll(np.asarray(Temperature(t).apply(p)), y)))


def fit_temperature(
    logits: npt.ArrayLike, labels: npt.ArrayLike, route: Route = "probabilities"
) -> Temperature:
    """Fit on a head's logits: the probability route searches on softmax(logits) as the spec
    does; the logit route on softmax(logits / T)."""
    z, y = _checked(logits, labels)
    if route == "probabilities":
        return fit_temperature_probabilities(softmax(z), y)
    return Temperature(grid_search(lambda t: nll(softmax(z / t), y)), "logits")


def pav(x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Increasing isotonic regression of y on x; knots = first and last point of each run.

    Equal x values are pooled first (their mean y, weighted by count), as scikit-learn does.
    """
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    order = np.argsort(xs, kind="stable")
    xs, ys = xs[order], ys[order]
    ux, start, counts = np.unique(xs, return_index=True, return_counts=True)
    sums = np.add.reduceat(ys, start) if xs.size else np.zeros(0)
    values: list[float] = []
    weights: list[float] = []
    sizes: list[int] = []
    for total, count in zip(sums.tolist(), counts.tolist(), strict=True):
        values.append(total / count)
        weights.append(float(count))
        sizes.append(1)
        while len(values) > 1 and values[-2] > values[-1]:
            w = weights[-2] + weights[-1]
            merged = (values[-2] * weights[-2] + values[-1] * weights[-1]) / w
            size = sizes[-2] + sizes[-1]
            del values[-1], weights[-1], sizes[-1]
            values[-1], weights[-1], sizes[-1] = merged, w, size
    fitted = np.clip(np.repeat(values, sizes), 0.0, 1.0)
    keep = np.ones(fitted.shape[0], dtype=bool)
    if fitted.shape[0] > 2:
        same_prev = fitted[1:-1] == fitted[:-2]
        same_next = fitted[1:-1] == fitted[2:]
        keep[1:-1] = ~(same_prev & same_next)
    return tuple(ux[keep].tolist()), tuple(fitted[keep].tolist())


def fit_isotonic(
    logits: npt.ArrayLike, labels: npt.ArrayLike, route: Route = "probabilities"
) -> Isotonic:
    """One-vs-rest isotonic map per column of softmax(logits)."""
    p = softmax(logits)
    y = np.asarray(labels, dtype=np.int64)
    if p.ndim != 2 or y.shape != (p.shape[0],) or p.shape[0] == 0:
        raise ValueError(
            f"expected logits (N, K) and labels (N,), N > 0; found {p.shape}, {y.shape}"
        )
    knots = tuple(pav(p[:, c], (y == c).astype(np.float64)) for c in range(p.shape[1]))
    return Isotonic(knots, route)


@dataclass(frozen=True, slots=True)
class Eligibility:
    """A device gets its own calibrator only when it passes all three (compared with >=)."""

    min_samples: int = 200
    min_days: int = 3
    min_distinct_labels: int = 3

    def capped(self, classes: int) -> Eligibility:
        """The distinct-label requirement capped at the head's class count (binary heads)."""
        return Eligibility(self.min_samples, self.min_days, min(self.min_distinct_labels, classes))


@dataclass(frozen=True, slots=True)
class DeviceReport:
    """Why a device did or did not get its own calibrator."""

    device_id: str
    samples: int
    days: int
    distinct_labels: int
    eligible: bool


def device_report(
    device_id: str, labels: Sequence[int], stamps: Sequence[float], rules: Eligibility
) -> DeviceReport:
    """Counts for one device: samples, distinct UTC calendar days, distinct labels."""
    days = {
        datetime.fromtimestamp(s, UTC).date() for s in stamps if s is not None and np.isfinite(s)
    }
    distinct = len(set(labels))
    eligible = (
        len(labels) >= rules.min_samples
        and len(days) >= rules.min_days
        and distinct >= rules.min_distinct_labels
    )
    return DeviceReport(device_id, len(labels), len(days), distinct, eligible)
