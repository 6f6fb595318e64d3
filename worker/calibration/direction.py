"""Direction of a bottom: contract section 10 (``decode_strict_censored_3way``) plus a gate.

Class ids: 0 below (censored low), 1 in range / unknown, 2 above (censored high). A head's
class is used only when its calibrated confidence is finite and at least the reject threshold
(strict ``<`` rejects, so equality accepts; NaN never passes, unlike taskclf); otherwise the
sample is class 1, "unknown". At threshold 0 with finite logits the gate always passes, and
the classes are zeroproofml's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from worker.calibration.calibrators import Calibrator, Identity, calibrate
from worker.calibration.store import CalibratorStore
from worker.inference.result import StrictResult

BELOW, IN_RANGE, ABOVE = 0, 1, 2
LABELS = ("below", "in_range", "above")
Bools = npt.NDArray[np.bool_]
Ints = npt.NDArray[np.int64]


def head_class_ids(labels: Sequence[str]) -> Ints:
    """Class id of each head column, from the column labels (2 or 3 of LABELS, distinct)."""
    if len(set(labels)) != len(labels) or not set(labels) <= set(LABELS) or len(labels) < 2:
        raise ValueError(f"labels: expected 2 or 3 distinct of {list(LABELS)}, found {labels}")
    return np.asarray([LABELS.index(label) for label in labels], dtype=np.int64)


def gate(
    probabilities: npt.NDArray[np.float64], thresholds: npt.ArrayLike
) -> tuple[Ints, npt.NDArray[np.float64], Bools]:
    """(argmax column, confidence, accepted): accept iff the max is finite and >= threshold."""
    p = np.asarray(probabilities, dtype=np.float64)
    finite = np.asarray(np.isfinite(p).all(axis=1), dtype=bool)
    safe = np.where(finite[:, None], p, -np.inf)
    column = np.argmax(safe, axis=1) if p.shape[0] else np.zeros(0, dtype=np.int64)
    confidence = np.where(finite, np.max(safe, axis=1, initial=-np.inf), np.nan)
    accepted = finite & (confidence >= np.asarray(thresholds, dtype=np.float64))
    return column.astype(np.int64), confidence, accepted


def _vector(name: str, value: npt.ArrayLike | None, rows: int) -> Any:
    if value is None:
        return None
    a = np.asarray(value)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.shape != (rows,):
        raise ValueError(f"{name}: expected shape ({rows},) or ({rows}, 1), found {a.shape}")
    return a


def censored_3way(
    numerator: npt.ArrayLike,
    denominator: npt.ArrayLike,
    *,
    tau_infer: float,
    direction_logits: npt.ArrayLike | None = None,
    orientation_signal: npt.ArrayLike | None = None,
    fault_mask: npt.ArrayLike | None = None,
    semantic_bottom_mask: npt.ArrayLike | None = None,
    bottom_provenance: npt.ArrayLike | None = None,
    head_accepted: npt.ArrayLike | None = None,
) -> tuple[npt.NDArray[np.floating], Bools, Ints]:
    """NumPy port of ``decode_strict_censored_3way`` -> (decoded, bottom_mask, class_id).

    ``head_accepted`` (per sample) is this worker's gate: where False, a sample the head
    would decide gets class 1 instead. None means every head decision stands.
    """
    p, q = np.asarray(numerator), np.asarray(denominator)
    p = p[:, 0] if p.ndim == 2 and p.shape[1] == 1 else p
    q = q[:, 0] if q.ndim == 2 and q.shape[1] == 1 else q
    if p.ndim != 1 or p.shape != q.shape:
        raise ValueError(f"expected P and Q of the same (B,) shape, found {p.shape}, {q.shape}")
    if not (np.isfinite(tau_infer) and tau_infer > 0):
        raise ValueError(f"tau_infer: expected a finite number > 0, found {tau_infer!r}")
    rows = p.shape[0]
    nonfinite = ~(np.isfinite(p) & np.isfinite(q))
    with np.errstate(all="ignore"):
        bottom = nonfinite | (q == 0) | (np.abs(q) < q.dtype.type(tau_infer))
        decoded = np.where(bottom, np.nan, p / q).astype(np.result_type(p, q))
    codes = _vector("bottom_provenance", bottom_provenance, rows)
    semantic_mask = _vector("semantic_bottom_mask", semantic_bottom_mask, rows)
    faults = _vector("fault_mask", fault_mask, rows)
    fault_like = nonfinite
    if codes is not None:
        fault_like = np.isin(codes, (1, 3))
    elif semantic_mask is not None:
        fault_like = bottom & ~semantic_mask.astype(bool)
    if faults is not None:
        given = faults.astype(bool) & bottom
        if codes is not None and not np.array_equal(given, np.isin(codes, (1, 3)) & bottom):
            raise ValueError("fault_mask: expected agreement with bottom_provenance codes")
        fault_like = given
    classes = np.full(rows, IN_RANGE, dtype=np.int64)
    signed = bottom & ~fault_like & np.isfinite(p)
    classes[signed] = np.where(p[signed] >= 0, ABOVE, BELOW)
    orientation = _vector("orientation_signal", orientation_signal, rows)
    if orientation is not None:
        if not np.isfinite(orientation).all():
            raise ValueError("orientation_signal: expected finite values everywhere")
        classes[bottom] = np.sign(orientation[bottom]).astype(np.int64) + 1
    if direction_logits is not None:
        logits = np.asarray(direction_logits)
        if logits.shape != (rows, 2):
            raise ValueError(f"direction_logits: expected ({rows}, 2), found {logits.shape}")
        provenance_given = codes is not None or semantic_mask is not None or faults is not None
        if not provenance_given:
            applies = bottom
        elif codes is not None:
            applies = bottom & np.isin(codes, (2, 3))
        elif semantic_mask is not None:
            applies = bottom & semantic_mask.astype(bool)
        else:
            applies = bottom & ~faults.astype(bool)
        if head_accepted is not None:
            refused = applies & ~_vector("head_accepted", head_accepted, rows).astype(bool)
            classes[refused] = IN_RANGE
            applies = applies & ~refused
        head = np.where(np.argmax(logits, axis=1) == 0, BELOW, ABOVE)
        classes[applies] = head[applies]
    return decoded, bottom, classes


def sample_flags(result: StrictResult) -> tuple[Bools, Bools]:
    """(bottom, head applies) per sample: section 7 reduction, semantic when provenance known.

    Without provenance the head applies to every bottom (section 10, no provenance input).
    """
    bottom = result.per_sample("bottom_mask")
    if not result.provenance_available:
        return bottom, bottom
    fault = result.per_sample("fault_mask") & bottom
    semantic = (result.per_sample("semantic_bottom_mask") | ~fault) & bottom
    return bottom, semantic


def decide(
    result: StrictResult,
    probabilities: npt.NDArray[np.float64],
    columns: Ints,
    thresholds: npt.ArrayLike,
) -> tuple[Ints, npt.NDArray[np.float64]]:
    """(class id, confidence) per sample from calibrated head probabilities.

    Non-bottom samples are class 1; fault bottoms (when provenance is known) are class 1
    (section 10's fault-like rule; the worker has no orientation signal); bottoms the head
    applies to take the head's class when the gate accepts it, else class 1.
    """
    _, applies = sample_flags(result)
    column, confidence, accepted = gate(probabilities, thresholds)
    classes = np.full(result.batch_size, IN_RANGE, dtype=np.int64)
    chosen = applies & accepted
    classes[chosen] = columns[column[chosen]]
    return classes, confidence


@dataclass(frozen=True)
class DirectionPolicy:
    """Column labels, calibrators and reject thresholds of one head (one generation)."""

    labels: tuple[str, ...]
    store: CalibratorStore | None = None
    threshold: float = 0.0
    device_thresholds: Mapping[str, float] = field(default_factory=dict)

    def calibrated(
        self, logits: npt.ArrayLike, device_ids: Sequence[str]
    ) -> tuple[npt.NDArray[np.float64], list[str]]:
        """Calibrated probabilities per row, each with its device's calibrator, and the scope."""
        z = np.asarray(logits, dtype=np.float64)
        out = np.empty_like(z)
        # Without a store the global calibrator is the identity: the wire keeps two values.
        scopes: list[str] = ["global"] * len(device_ids)
        if self.store is None:
            out[:] = calibrate(Identity(), z) if z.size else z
            return out, scopes
        groups: dict[str, list[int]] = {}
        for row, device in enumerate(device_ids):
            groups.setdefault(device, []).append(row)
        for device, rows in groups.items():
            calibrator: Calibrator
            calibrator, scope = self.store.lookup(device)
            out[rows] = calibrate(calibrator, z[rows])
            for row in rows:
                scopes[row] = scope
        return out, scopes

    def records(
        self, result: StrictResult, logits: npt.ArrayLike, device_ids: Sequence[str]
    ) -> list[dict[str, Any]]:
        """One ``direction`` object per sample, for results and solver requests."""
        probabilities, scopes = self.calibrated(logits, device_ids)
        thresholds = [self.device_thresholds.get(d, self.threshold) for d in device_ids]
        columns = head_class_ids(self.labels)
        classes, confidence = decide(result, probabilities, columns, thresholds)
        return [
            {
                "class_id": c,
                "label": LABELS[c],
                "confidence": conf if np.isfinite(conf) else None,
                "calibrator": scope,
            }
            for c, conf, scope in zip(classes.tolist(), confidence.tolist(), scopes, strict=True)
        ]
