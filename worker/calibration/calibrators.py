"""Calibrators: probability arrays in, calibrated probability arrays out (pure NumPy).

The maths is the one in ``calibration-and-policy.md`` sections 2.1-2.3, with its hazards
fixed: inputs are read as float64 (an integer array never truncates), the class count is
checked (never uninitialised columns), and a non-finite row comes out NaN instead of raising,
so the caller's "finite and at least the threshold" rule can refuse it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

EPS = 1e-12
Route = Literal["probabilities", "logits"]
Array = npt.NDArray[np.float64]


class Calibrator(Protocol):
    """Probabilities (K,) or (N, K) in, the same shape out; rows of the output sum to 1."""

    @property
    def kind(self) -> str:
        """``identity``, ``temperature`` or ``isotonic``."""
        ...

    @property
    def route(self) -> Route:
        """What it was fitted on: probabilities (spec maths) or logits."""
        ...

    def apply(self, probabilities: npt.ArrayLike) -> Any:
        """Calibrate probabilities (the probability route)."""
        ...

    def apply_logits(self, logits: npt.ArrayLike) -> Array:
        """Calibrate straight from logits (the logit route; never floored)."""
        ...

    def to_json(self) -> dict[str, Any]:
        """The calibrator file's type-specific keys."""
        ...


def softmax(z: npt.ArrayLike) -> Array:
    """Numerically stable softmax over the last axis, float64."""
    a = np.asarray(z, dtype=np.float64)
    shifted = a - np.max(a, axis=-1, keepdims=True)
    e = np.exp(shifted)
    out: Array = e / np.sum(e, axis=-1, keepdims=True)
    return out


def _as_float(p: npt.ArrayLike, width: int | None) -> Array:
    a = np.asarray(p, dtype=np.float64)
    if a.ndim not in (1, 2):
        raise ValueError(f"expected probabilities of shape (K,) or (N, K), found {a.shape}")
    if width is not None and a.shape[-1] != width:
        raise ValueError(f"expected {width} classes like the calibrator, found {a.shape[-1]}")
    return a


@dataclass(frozen=True, slots=True)
class Identity:
    """Returns its input unchanged: the same object, no copy, no renormalisation."""

    classes: int | None = None
    route: Route = "probabilities"
    kind: str = "identity"

    def apply(self, probabilities: npt.ArrayLike) -> Any:
        return probabilities

    def apply_logits(self, logits: npt.ArrayLike) -> Array:
        return softmax(logits)

    def to_json(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True, slots=True)
class Temperature:
    """softmax(ln(max(p, 1e-12)) / T); T == 1 exactly returns the input object unchanged."""

    temperature: float
    route: Route = "probabilities"
    kind: str = "temperature"

    def __post_init__(self) -> None:
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, int | float):
            raise ValueError(f"temperature: expected a number, found {t!r}")
        if not math.isfinite(t) or t <= 0:
            raise ValueError(f"temperature: expected a finite number > 0, found {t!r}")

    def apply(self, probabilities: npt.ArrayLike) -> Any:
        if self.temperature == 1.0:
            return probabilities
        p = _as_float(probabilities, None)
        return softmax(np.log(np.maximum(p, EPS)) / self.temperature)

    def apply_logits(self, logits: npt.ArrayLike) -> Array:
        return softmax(np.asarray(logits, dtype=np.float64) / self.temperature)

    def to_json(self) -> dict[str, Any]:
        return {"temperature": self.temperature}


@dataclass(frozen=True, slots=True)
class Isotonic:
    """One monotone map per class: clamp to the knots, interpolate, floor, renormalise.

    ``knots[c] = (x, y)`` with x ascending, y non-decreasing in [0, 1]. Unlike temperature
    scaling this can change the argmax.
    """

    knots: tuple[tuple[tuple[float, ...], tuple[float, ...]], ...]
    route: Route = "probabilities"
    kind: str = "isotonic"

    def __post_init__(self) -> None:
        if not self.knots:
            raise ValueError("knots: expected one knot list per class, found none")
        for c, (x, y) in enumerate(self.knots):
            check_knots(x, y, f"knots[{c}]")

    @property
    def classes(self) -> int:
        return len(self.knots)

    def apply(self, probabilities: npt.ArrayLike) -> Any:
        p = _as_float(probabilities, self.classes)
        single = p.ndim == 1
        rows = p.reshape(1, -1) if single else p
        q = np.empty_like(rows)
        for c, (x, y) in enumerate(self.knots):
            xs = np.asarray(x, dtype=np.float64)
            column = np.clip(rows[:, c], xs[0], xs[-1])
            q[:, c] = np.maximum(np.interp(column, xs, np.asarray(y, dtype=np.float64)), EPS)
        # np.clip keeps NaN, np.interp maps it to NaN: a bad row stays visibly bad.
        out = q / q.sum(axis=1, keepdims=True)
        return out[0] if single else out

    def apply_logits(self, logits: npt.ArrayLike) -> Array:
        out: Array = self.apply(softmax(logits))
        return out

    def to_json(self) -> dict[str, Any]:
        return {"knots": [{"x": list(x), "y": list(y)} for x, y in self.knots]}


def check_knots(x: tuple[float, ...], y: tuple[float, ...], where: str) -> None:
    """Finite, same length, x strictly ascending, y non-decreasing in [0, 1]."""
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(
            f"{where}: expected x and y of the same non-zero length, found {len(x)} and {len(y)}"
        )
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
        raise ValueError(f"{where}: expected finite knots, found {list(x)} / {list(y)}")
    if np.any(np.diff(xs) <= 0):
        raise ValueError(f"{where}.x: expected strictly ascending values, found {list(x)}")
    if np.any(np.diff(ys) < 0) or ys.min() < 0 or ys.max() > 1:
        raise ValueError(f"{where}.y: expected non-decreasing values in [0, 1], found {list(y)}")


def calibrate(calibrator: Calibrator, logits: npt.ArrayLike) -> Array:
    """Calibrated probabilities of a head's logits, on the calibrator's own route."""
    if calibrator.route == "logits":
        return calibrator.apply_logits(logits)
    out: Array = np.asarray(calibrator.apply(softmax(logits)), dtype=np.float64)
    return out
