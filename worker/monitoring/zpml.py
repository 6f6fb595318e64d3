"""zeroproofml-compatible monitor events (contract sections 8 and 9), pure code.

A consumer written for zeroproofml's ``StrictInferenceMonitor`` JSONL reads these events
unchanged: same names, same fields, same firing rules, rates over **elements** (mask entries),
and the reference's drift rule (each non-empty batch against the previous non-empty batch).
Our own windowed, significance-tested drift alerts live in :mod:`worker.monitoring.drift`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

BoolArray = npt.NDArray[np.bool_]
Event = dict[str, Any]


def _align(mask: np.ndarray, bottom: BoolArray) -> BoolArray:
    """Contract 8.1: same shape, or a per-sample vector expanded over trailing axes."""
    mask = np.asarray(mask).astype(bool, copy=False)
    if mask.shape == bottom.shape:
        return mask
    if mask.ndim == 1 and bottom.ndim >= 1 and mask.shape[0] == bottom.shape[0]:
        return np.broadcast_to(mask.reshape(mask.shape + (1,) * (bottom.ndim - 1)), bottom.shape)
    try:
        return np.broadcast_to(mask, bottom.shape)
    except ValueError:
        return mask.reshape(bottom.shape)


@dataclass
class ReferenceMonitor:
    """Element-level running counts and the reference's per-update events."""

    bundle_id: str | None = None
    acceptance_rate_drift_threshold: float | None = None
    n_updates: int = 0
    n: int = 0
    n_bottom: int = 0
    _previous_accept_rate: float | None = None

    def update(
        self,
        bottom_mask: np.ndarray,
        gap_mask: np.ndarray | None = None,
        *,
        fault_mask: np.ndarray | None = None,
        semantic_bottom_mask: np.ndarray | None = None,
        bottom_provenance: np.ndarray | None = None,
        numerical_hazard_mask: np.ndarray | None = None,
    ) -> list[Event]:
        """Count one batch and return its events in the reference's order."""
        bottom = np.asarray(bottom_mask).astype(bool, copy=False)
        batch_n = int(bottom.size)
        n_bottom = int(np.count_nonzero(bottom))
        self.n_updates += 1
        self.n += batch_n
        self.n_bottom += n_bottom
        fault, semantic = self._provenance(
            bottom, fault_mask, semantic_bottom_mask, bottom_provenance
        )
        running = (self.n - self.n_bottom) / self.n if self.n else 0.0
        context: Event = {
            "update_index": self.n_updates,
            "batch_size": batch_n,
            "running_accept_rate": running,
        }
        if self.bundle_id is not None:
            context["bundle_id"] = self.bundle_id
        events: list[Event] = []

        def count_event(name: str, count: int) -> None:
            if count > 0:
                events.append({"event": name, **context, "count": count, "rate": count / batch_n})

        if fault is not None and semantic is not None:
            count_event("fault-bottom-trigger", int(np.count_nonzero(fault)))
            count_event("semantic-bottom-trigger", int(np.count_nonzero(semantic)))
        if numerical_hazard_mask is not None:
            hazard = _align(numerical_hazard_mask, bottom) & ~bottom
            count_event("numerical-hazard-trigger", int(np.count_nonzero(hazard)))
        if gap_mask is not None:
            count_event("gap-trigger", int(np.count_nonzero(_align(gap_mask, bottom))))
        events.extend(self._drift(batch_n, n_bottom, context))
        return events

    @staticmethod
    def _provenance(
        bottom: BoolArray,
        fault_mask: np.ndarray | None,
        semantic_mask: np.ndarray | None,
        codes: np.ndarray | None,
    ) -> tuple[BoolArray | None, BoolArray | None]:
        """Split masks win; a missing one comes from the codes; both are ANDed with bottom."""
        fault = _align(fault_mask, bottom) if fault_mask is not None else None
        semantic = _align(semantic_mask, bottom) if semantic_mask is not None else None
        if codes is not None:
            code = np.asarray(codes)
            if fault is None:
                fault = _align((code == 1) | (code == 3), bottom)
            if semantic is None:
                semantic = _align((code == 2) | (code == 3), bottom)
        if fault is None or semantic is None:
            return None, None
        return fault & bottom, semantic & bottom

    def _drift(self, batch_n: int, n_bottom: int, context: Event) -> list[Event]:
        if batch_n == 0:
            return []
        accept_rate = (batch_n - n_bottom) / batch_n
        previous, self._previous_accept_rate = self._previous_accept_rate, accept_rate
        threshold = self.acceptance_rate_drift_threshold
        if threshold is None or previous is None:
            return []
        delta = accept_rate - previous
        if abs(delta) < threshold:
            return []
        return [
            {
                "event": "acceptance-rate-drift",
                **context,
                "accept_rate": accept_rate,
                "previous_accept_rate": previous,
                "delta": delta,
                "threshold": threshold,
                "direction": "increase" if delta > 0 else "decrease",
            }
        ]


def fallback_routing_events(
    routed: np.ndarray, codes: np.ndarray | None, bottom: np.ndarray
) -> list[Event]:
    """``fallback-routing`` events for one batch, per sample (contract section 9).

    ``routed``, ``codes`` (per-sample provenance codes or None) and ``bottom`` are per-sample
    vectors. Tags: ``mixed`` (code 3), ``fault`` (code 1), ``semantic`` (code 2; zeroproofml
    never routes these, our policy can), then ``none`` for routed samples that are not bottom.
    """
    routed = np.asarray(routed, dtype=bool)
    batch = int(routed.size)
    routed_count = int(np.count_nonzero(routed))
    if routed_count == 0:
        return []
    base = {
        "event": "fallback-routing",
        "batch_size": batch,
        "routed_count": routed_count,
        "routed_rate": routed_count / batch,
    }
    bottom = np.asarray(bottom, dtype=bool)
    tags: list[tuple[str, int]] = []
    tagged = 0
    if codes is not None:  # without provenance every routed sample is "none", as upstream
        # One selection, then counts in Python: each numpy call on the whole batch costs
        # more than counting the few dozen routed bottoms.
        routed_codes = np.asarray(codes)[routed & bottom].tolist()
        for tag, code in (("mixed", 3), ("fault", 1), ("semantic", 2)):
            tags.append((tag, routed_codes.count(code)))
        tagged = sum(1 <= code <= 3 for code in routed_codes)
    tags.append(("none", routed_count - tagged))
    return [
        {**base, "count": count, "rate": count / batch, "provenance_tag": tag}
        for tag, count in tags
        if count > 0
    ]


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def jsonl_line(event: Event) -> str:
    """One line exactly as zeroproofml's JsonlLogger writes it: sorted keys, NaN as null."""
    return json.dumps(_json_safe(event), sort_keys=True) + "\n"
