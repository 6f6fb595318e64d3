"""The monitoring hot path's fast counting agrees with the plain per-sample formulation."""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from worker.monitoring.counts import route_counts
from worker.monitoring.drift import FLEET, DriftMonitor
from worker.monitoring.observer import _rows_of
from worker.monitoring.zpml import fallback_routing_events

ROUTES = st.lists(st.sampled_from(["accept", "solver", "reject"]), max_size=60)
SAMPLES = st.lists(
    st.tuples(st.sampled_from([f"dev-{i}" for i in range(6)]), st.booleans(), st.booleans()),
    max_size=80,
)


@given(SAMPLES)
def test_drift_windows_count_what_a_per_sample_loop_counts(samples: list) -> None:
    devices = [device for device, _, _ in samples]
    accepted = [ok for _, ok, _ in samples]
    fault = [bad for _, _, bad in samples]
    monitor = DriftMonitor()
    monitor.observe(30.0, devices, accepted, fault)
    expected: dict[str, list[int]] = {}
    for device, ok, bad in samples:
        for name in (FLEET, f"device:{device}"):
            counts = expected.setdefault(name, [0, 0, 0])
            counts[0] += 1
            counts[1] += ok
            counts[2] += bad
    found = {
        name: [scope.window.n, scope.window.accepted, scope.window.faults]
        for name, scope in monitor._scopes.items()
    }
    assert found == ({FLEET: [0, 0, 0]} | expected if not samples else expected)
    # least recently seen first: the fleet, then devices in the order the batch named them
    assert list(monitor._scopes) == [FLEET, *(f"device:{d}" for d in dict.fromkeys(devices))]


@given(ROUTES)
def test_route_counts_equal_counter_in_first_seen_order(routes: list[str]) -> None:
    fresh = [str(np.str_(route)) for route in routes]  # distinct objects, as routing makes
    assert list(route_counts(fresh).items()) == list(Counter(routes).items())


@given(ROUTES)
def test_rows_of_finds_every_match(routes: list[str]) -> None:
    expected = [row for row, route in enumerate(routes) if route == "solver"]
    assert _rows_of(routes, "solver", len(expected)) == expected


def _plain_fallback_counts(routed: np.ndarray, codes: np.ndarray, bottom: np.ndarray) -> dict:
    tags = {}
    for tag, code in (("mixed", 3), ("fault", 1), ("semantic", 2)):
        tags[tag] = int(np.count_nonzero(routed & bottom & (codes == code)))
    tagged = bottom & (codes >= 1) & (codes <= 3)
    tags["none"] = int(np.count_nonzero(routed & ~tagged))
    return {tag: count for tag, count in tags.items() if count > 0}


@given(st.lists(st.tuples(st.booleans(), st.booleans(), st.integers(-1, 4)), max_size=60))
def test_fallback_tags_match_the_per_sample_masks(rows: list) -> None:
    routed = np.array([r for r, _, _ in rows], dtype=bool)
    bottom = np.array([b for _, b, _ in rows], dtype=bool)
    codes = np.array([c for _, _, c in rows], dtype=np.int64)
    events = fallback_routing_events(routed, codes, bottom)
    assert {e["provenance_tag"]: e["count"] for e in events} == _plain_fallback_counts(
        routed, codes, bottom
    )
