"""Strict decoding in Signed Common Meadow arithmetic, zeroproofml 0.6.1 rules (contract §6).

Pure NumPy. Thresholds are rounded to the denominator's dtype before comparing, exactly as the
exported graphs do: a float32 Q equal to float32(1e-4) is *not* below tau_infer = 1e-4.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from worker.inference.result import StrictResult, provenance_codes

FloatArray = npt.NDArray[np.floating]
BoolArray = npt.NDArray[np.bool_]


class ThresholdError(ValueError):
    """A threshold that cannot gate in the denominator's dtype."""


def dtype_threshold(tau: float, dtype: np.dtype[np.floating]) -> np.floating:
    """Round ``tau`` to ``dtype`` (round to nearest); refuse one that vanishes there."""
    if isinstance(tau, bool) or not math.isfinite(float(tau)) or float(tau) <= 0:
        raise ThresholdError(f"tau must be a finite number > 0, found {tau!r}")
    rounded: np.floating = np.dtype(dtype).type(tau)
    if rounded == 0:
        raise ThresholdError(f"tau {tau!r} rounds to 0 in {np.dtype(dtype).name}")
    return rounded


def denominator_view(
    p_shape: tuple[int, ...], q: npt.NDArray[np.generic]
) -> npt.NDArray[np.generic]:
    """Q with trailing singleton axes appended so that it broadcasts against P."""
    if q.ndim > len(p_shape):
        raise ValueError(f"denominator rank {q.ndim} exceeds numerator rank {len(p_shape)}")
    view = q.reshape(q.shape + (1,) * (len(p_shape) - q.ndim))
    pairs: list[tuple[int, int]] = list(zip(view.shape, p_shape, strict=True))
    for axis, (qd, pd) in enumerate(pairs):
        if qd not in (1, pd):
            raise ValueError(
                f"denominator shape {q.shape} does not broadcast against numerator {p_shape} "
                f"(axis {axis})"
            )
    return view


def reduce_to(
    mask: BoolArray, q_view_shape: tuple[int, ...], q_shape: tuple[int, ...]
) -> BoolArray:
    """OR a numerator-shaped mask over the components that share one denominator entry."""
    axes = tuple(
        i
        for i, (qd, md) in enumerate(zip(q_view_shape, mask.shape, strict=True))
        if qd == 1 and md != 1
    )
    if axes:
        mask = np.logical_or.reduce(mask, axis=axes, keepdims=True)
    return mask.reshape(q_shape)


def strict_decode(
    p: FloatArray,
    q: FloatArray,
    tau_infer: float,
    tau_train: float | None = None,
) -> StrictResult:
    """Decode numerator ``p`` over denominator ``q`` with the 0.6.1 strict rules.

    ``q`` may have lower rank than ``p`` (a shared denominator); masks then have ``q``'s shape.
    """
    p = np.asarray(p)
    q = np.asarray(q)
    if p.dtype != q.dtype:
        raise ValueError(f"numerator dtype {p.dtype} differs from denominator dtype {q.dtype}")
    t_inf = dtype_threshold(tau_infer, q.dtype)
    gap_on = tau_train is not None and float(tau_train) > float(tau_infer)
    qv = denominator_view(p.shape, q)

    with np.errstate(all="ignore"):
        abs_q = np.abs(q)
        fault0 = reduce_to(~np.isfinite(p), qv.shape, q.shape) | ~np.isfinite(q)
        semantic = (q == 0) | (abs_q < t_inf)
        bottom0 = fault0 | semantic
        safe_q = np.where(bottom0.reshape(qv.shape), q.dtype.type(1), qv)
        quotient = p / safe_q
        fault = fault0 | reduce_to(~np.isfinite(quotient), qv.shape, q.shape)
        bottom = fault | semantic
        decoded = np.where(bottom.reshape(qv.shape), p.dtype.type(np.nan), quotient)
        if gap_on:
            assert tau_train is not None
            t_train = dtype_threshold(tau_train, q.dtype)
            gap = (abs_q >= t_inf) & (abs_q < t_train) & ~bottom
        else:
            gap = np.zeros(q.shape, dtype=bool)
    return StrictResult(
        decoded=decoded.astype(p.dtype, copy=False),
        bottom_mask=bottom,
        gap_mask=gap,
        fault_mask=fault,
        semantic_bottom_mask=semantic,
        bottom_provenance=provenance_codes(fault, semantic),
    )
