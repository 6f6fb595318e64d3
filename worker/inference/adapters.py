"""Adapters: every bundle's raw graph outputs become one :class:`StrictResult` (pure code).

* ``v2-passthrough``: 6-output graphs. Outputs are checked against the contract's invariants;
  any entry that breaks one becomes a fault bottom (fail closed).
* ``v1-recovered``: 3-output graphs whose decode tail was recognised. P and Q come out of the
  graph and the 0.6.1 rules produce real provenance; the graph's own masks are a cross-check.
* ``v1-fail-closed``: 3-output graphs we cannot read. Every non-finite decoded entry is a
  fault bottom, gap never overlaps bottom, and provenance is reported as unavailable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
import numpy.typing as npt

from worker.inference.decode import denominator_view, reduce_to, strict_decode
from worker.inference.result import FIELDS, StrictResult, provenance_codes

BoolArray = npt.NDArray[np.bool_]


class ContractViolationError(ValueError):
    """Graph outputs whose shapes or dtypes cannot be read as the strict contract at all."""


class Adapter(Protocol):
    """Turns the fetched graph outputs of one batch into the stable contract."""

    @property
    def name(self) -> str:
        """Stable adapter name, reported by ``bundle inspect`` and in logs."""
        ...

    @property
    def provenance_available(self) -> bool:
        """Whether fault and semantic masks are measured rather than fail-closed defaults."""
        ...

    @property
    def fetch(self) -> tuple[str, ...]:
        """Graph output names to request from the session, in the order ``adapt`` expects."""
        ...

    def adapt(self, outputs: Sequence[np.ndarray]) -> StrictResult:
        """Normalize one batch."""
        ...


def _nonfinite_entries(decoded: np.ndarray, mask_shape: tuple[int, ...]) -> BoolArray:
    """Entries (in mask shape) where any decoded component is NaN or infinite."""
    view = denominator_view(decoded.shape, np.empty(mask_shape, dtype=decoded.dtype))
    return reduce_to(~np.isfinite(decoded), view.shape, mask_shape)


def _non_nan_entries(decoded: np.ndarray, mask_shape: tuple[int, ...]) -> BoolArray:
    """Entries (in mask shape) where any decoded component holds a number instead of NaN."""
    view = denominator_view(decoded.shape, np.empty(mask_shape, dtype=decoded.dtype))
    return reduce_to(~np.isnan(decoded), view.shape, mask_shape)


def _fail_closed(
    decoded: np.ndarray,
    bottom: BoolArray,
    gap: BoolArray,
    fault: BoolArray,
    semantic: BoolArray,
    violated: BoolArray,
    *,
    provenance_available: bool = True,
) -> StrictResult:
    """Force ``violated`` entries to fault bottoms and rebuild the dependent fields."""
    count = int(violated.sum())
    if count:
        fault = fault | violated
        bottom = bottom | violated
    view = denominator_view(decoded.shape, np.empty(bottom.shape, dtype=decoded.dtype))
    bottom_b = bottom.reshape(view.shape)
    if count or not provenance_available:
        decoded = np.where(bottom_b, decoded.dtype.type(np.nan), decoded)
    return StrictResult(
        decoded=decoded,
        bottom_mask=bottom,
        gap_mask=gap & ~bottom,
        fault_mask=fault,
        semantic_bottom_mask=semantic,
        bottom_provenance=provenance_codes(fault, semantic),
        provenance_available=provenance_available,
        violations=count,
    )


def _check_mask(name: str, array: np.ndarray, shape: tuple[int, ...], kind: str) -> None:
    if array.shape != shape:
        raise ContractViolationError(f"{name}: expected shape {shape}, found {array.shape}")
    if array.dtype.kind != kind:
        raise ContractViolationError(f"{name}: expected dtype kind {kind!r}, found {array.dtype}")


def _check_decoded(decoded: np.ndarray, mask_shape: tuple[int, ...]) -> None:
    if decoded.dtype.kind != "f":
        raise ContractViolationError(f"decoded: expected a float dtype, found {decoded.dtype}")
    try:
        denominator_view(decoded.shape, np.empty(mask_shape))
    except ValueError as exc:
        raise ContractViolationError(
            f"decoded {decoded.shape} vs masks {mask_shape}: {exc}"
        ) from exc


@dataclass(frozen=True, slots=True)
class PassthroughV2:
    """Six-output graphs: trust but verify."""

    name: ClassVar[str] = "v2-passthrough"
    provenance_available: ClassVar[bool] = True

    @property
    def fetch(self) -> tuple[str, ...]:
        return FIELDS

    def adapt(self, outputs: Sequence[np.ndarray]) -> StrictResult:
        decoded, bottom, gap, fault, semantic, codes = outputs
        shape = bottom.shape
        _check_decoded(decoded, shape)
        for name, array in (
            ("bottom_mask", bottom),
            ("gap_mask", gap),
            ("fault_mask", fault),
            ("semantic_bottom_mask", semantic),
        ):
            _check_mask(name, array, shape, "b")
        _check_mask("bottom_provenance", codes, shape, "i")
        violated = (
            (bottom != (fault | semantic))
            | (codes != provenance_codes(fault, semantic))
            | (gap & bottom)
            | (~bottom & _nonfinite_entries(decoded, shape))
            | (bottom & _non_nan_entries(decoded, shape))
        )
        if not violated.any():
            return StrictResult(
                decoded, bottom, gap, fault, semantic, codes.astype(np.int64, copy=False)
            )
        return _fail_closed(decoded, bottom, gap, fault, semantic, violated)


@dataclass(frozen=True, slots=True)
class RecoveredV1:
    """Three-output graphs with a recognised tail: real 0.6.1 provenance from P and Q."""

    numerator: str
    denominator: str
    tau_infer: float
    tau_train: float | None
    name: ClassVar[str] = "v1-recovered"
    provenance_available: ClassVar[bool] = True

    @property
    def fetch(self) -> tuple[str, ...]:
        return ("decoded", "bottom_mask", "gap_mask", self.numerator, self.denominator)

    def adapt(self, outputs: Sequence[np.ndarray]) -> StrictResult:
        g_decoded, g_bottom, g_gap, p, q = outputs
        ours = strict_decode(p, q, self.tau_infer, self.tau_train)
        shape = ours.bottom_mask.shape
        _check_mask("bottom_mask", g_bottom, shape, "b")
        _check_mask("gap_mask", g_gap, shape, "b")
        if g_decoded.shape != ours.decoded.shape:
            raise ContractViolationError(
                f"decoded: expected {ours.decoded.shape}, found {g_decoded.shape}"
            )
        # The graph (0.5.1 rules) never calls bottom what 0.6.1 accepts, and both divide P by
        # the same Q on accepted entries; any disagreement means we misread the graph.
        accepted = ~ours.bottom_mask
        same = (g_decoded == ours.decoded) | (np.isnan(g_decoded) & np.isnan(ours.decoded))
        view = denominator_view(p.shape, q)
        differs = reduce_to(~same, view.shape, shape)
        violated = accepted & (g_bottom | differs | (g_gap != ours.gap_mask))
        if not violated.any():
            return ours
        return _fail_closed(
            ours.decoded,
            ours.bottom_mask,
            ours.gap_mask,
            ours.fault_mask,
            ours.semantic_bottom_mask,
            violated,
        )


@dataclass(frozen=True, slots=True)
class FailClosedV1:
    """Three-output graphs we cannot read: non-finite means fault, provenance unavailable."""

    name: ClassVar[str] = "v1-fail-closed"
    provenance_available: ClassVar[bool] = False

    @property
    def fetch(self) -> tuple[str, ...]:
        return ("decoded", "bottom_mask", "gap_mask")

    def adapt(self, outputs: Sequence[np.ndarray]) -> StrictResult:
        decoded, bottom, gap = outputs
        shape = bottom.shape
        _check_decoded(decoded, shape)
        _check_mask("gap_mask", gap, shape, "b")
        fault = bottom | _nonfinite_entries(decoded, shape)
        no_semantic = np.zeros(shape, dtype=bool)
        return _fail_closed(
            decoded,
            fault,
            gap,
            fault,
            no_semantic,
            np.zeros(shape, dtype=bool),
            provenance_available=False,
        )
