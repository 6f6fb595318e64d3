"""Shared test helpers: fixture paths and array comparison that treats NaN as equal."""

from __future__ import annotations

from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).parent / "fixtures" / "zeroproofml"
GENERATED = Path(__file__).parent / "fixtures" / "generated"

# The settings `scm-worker run` cannot do without, for tests of the configuration itself.
REQUIRED_SETTINGS = {
    "bundle": "b",
    "bootstrap_servers": "k:9092",
    "group_id": "g",
    "input_topic": "in",
    "results_topic": "out",
    "solver_topic": "solver",
    "dlq_topic": "dlq",
}


def same_array(ours: np.ndarray, reference: np.ndarray) -> bool:
    """Bit-for-bit agreement up to NaN payloads: dtype, shape, values, the sign of zeros."""
    if ours.dtype != reference.dtype or ours.shape != reference.shape:
        return False
    if ours.dtype.kind != "f":
        return bool(np.array_equal(ours, reference))
    nan = np.isnan(ours)
    if not np.array_equal(nan, np.isnan(reference)):
        return False
    return bool(
        np.array_equal(ours[~nan], reference[~nan])
        and np.array_equal(np.signbit(ours[~nan]), np.signbit(reference[~nan]))
    )


def pytest_sessionfinish() -> None:
    """Write the reliability report (``make soak`` asks for it with SCM_WORKER_REPORT)."""
    from tests.fault_support import write_report

    write_report()
