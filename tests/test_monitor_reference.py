"""Our zeroproofml-compatible events equal the reference's own logs, line for line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import FIXTURES
from worker.monitoring.zpml import ReferenceMonitor, fallback_routing_events, jsonl_line

HELPERS = FIXTURES / "runtime_helpers_example"
CASES = FIXTURES / "v061_passthrough_elementwise" / "cases.npz"


def _batches() -> list[list[int]]:
    return [
        rows for _, rows in json.loads((HELPERS / "monitor_batches.json").read_text())["batches"]
    ]


@pytest.mark.parametrize("variant", ["full", "bottom_and_gap_only", "bottom_provenance_only"])
def test_monitor_events_match_reference_bytes(variant: str) -> None:
    """Feeding the reference's batches yields its JSONL byte for byte."""
    data = np.load(CASES)
    q = data["raw__Q"]
    monitor = ReferenceMonitor(
        bundle_id="v061_passthrough_elementwise", acceptance_rate_drift_threshold=0.2
    )
    lines = []
    for rows in _batches():
        idx = np.array(rows, dtype=int)
        bottom = data["ort__bottom_mask"][idx]
        kwargs: dict[str, np.ndarray] = {}
        gap = None
        if variant in ("full", "bottom_and_gap_only"):
            gap = data["ort__gap_mask"][idx]
        if variant == "full":
            kwargs = {
                "fault_mask": data["ort__fault_mask"][idx],
                "semantic_bottom_mask": data["ort__semantic_bottom_mask"][idx],
                "bottom_provenance": data["ort__bottom_provenance"][idx],
            }
            with np.errstate(invalid="ignore"):
                kwargs["numerical_hazard_mask"] = (
                    np.isfinite(q[idx]) & (np.abs(q[idx]) < 1e-3) & ~bottom
                )
        if variant == "bottom_provenance_only":
            kwargs = {"bottom_provenance": data["ort__bottom_provenance"][idx]}
        lines += [jsonl_line(e) for e in monitor.update(bottom, gap, **kwargs)]
    expected = (HELPERS / f"monitor_events_{variant}.jsonl").read_text()
    assert "".join(lines) == expected


def test_fallback_routing_events() -> None:
    """The reference's routing events for per-sample provenance codes, and without provenance."""
    data = np.load(HELPERS / "helpers_cases.npz")
    codes = data["fb_in__bottom_provenance"]
    bottom = data["fb_in__bottom_mask"]
    invalid = bottom | data["fb_in__gap_mask"]
    # route_to_analytic_solver routes invalid samples except semantic bottoms (codes 2, 3).
    routed = invalid & ~(bottom & np.isin(codes, (2, 3)))
    lines = "".join(jsonl_line(e) for e in fallback_routing_events(routed, codes, bottom))
    assert lines == (HELPERS / "fallback_events_bottom_provenance.jsonl").read_text()
    lines = "".join(jsonl_line(e) for e in fallback_routing_events(invalid, None, bottom))
    assert lines == (HELPERS / "fallback_events_no_provenance.jsonl").read_text()
