"""The one normalized batch result every adapter yields, whatever the bundle's schema."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FIELDS = (
    "decoded",
    "bottom_mask",
    "gap_mask",
    "fault_mask",
    "semantic_bottom_mask",
    "bottom_provenance",
)

# Provenance codes (contract section 7).
FINITE, FAULT, SEMANTIC, MIXED = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class StrictResult:
    """Decoded values and masks for one batch, in the stable v2 contract.

    ``decoded`` has the numerator's shape and float dtype; the five masks have the
    denominator's shape (per element, or per sample for a shared denominator).
    ``provenance_available`` is False when the fault/semantic split could not be derived
    from the graph: the masks are then the fail-closed classification (every bottom is a
    fault), not a measurement. ``violations`` counts mask entries the adapter forced to a
    fault bottom because the graph's outputs broke an invariant.
    """

    decoded: npt.NDArray[np.floating]
    bottom_mask: npt.NDArray[np.bool_]
    gap_mask: npt.NDArray[np.bool_]
    fault_mask: npt.NDArray[np.bool_]
    semantic_bottom_mask: npt.NDArray[np.bool_]
    bottom_provenance: npt.NDArray[np.int64]
    provenance_available: bool = True
    violations: int = 0
    # per_sample's answers: routing, encoding and monitoring each ask for the same flags.
    _per_sample: dict[str, npt.NDArray[np.bool_]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def fields(self) -> dict[str, npt.NDArray[np.generic]]:
        """The six contract fields by name, in contract order."""
        return {name: getattr(self, name) for name in FIELDS}

    def per_sample(self, name: str) -> npt.NDArray[np.bool_]:
        """One flag per sample: the named mask OR-reduced over every non-batch axis."""
        cached = self._per_sample.get(name)
        if cached is not None:
            return cached
        mask: npt.NDArray[np.bool_] = getattr(self, name)
        if mask.ndim == 1:
            return mask
        rows = mask.shape[0]
        flags: npt.NDArray[np.bool_] = (
            np.any(mask.reshape(rows, -1), axis=1) if mask.size else (np.zeros(rows, dtype=bool))
        )
        flags.flags.writeable = False  # shared by every caller
        self._per_sample[name] = flags
        return flags

    @property
    def batch_size(self) -> int:
        """Number of samples (rows) in the batch."""
        return int(self.decoded.shape[0]) if self.decoded.ndim else 1


def provenance_codes(
    fault: npt.NDArray[np.bool_], semantic: npt.NDArray[np.bool_]
) -> npt.NDArray[np.int64]:
    """0 finite, 1 fault only, 2 semantic only, 3 both (contract section 7)."""
    return fault.astype(np.int64) + 2 * semantic.astype(np.int64)
