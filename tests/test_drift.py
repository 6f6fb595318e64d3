"""Windowed drift alerts: one raise and one resolve per episode, no alarms from noise."""

from __future__ import annotations

import numpy as np
import pytest

from worker.monitoring.drift import DriftMonitor, DriftSettings, wilson_interval

DEVICES = [f"arm-{i}" for i in range(10)]


def _stream(
    monitor: DriftMonitor, seconds: int, rate_fn, per_second: int = 20, seed: int = 0
) -> list[dict]:
    """Feed ``per_second`` samples a second, one batch a second; collect every event."""
    rng = np.random.default_rng(seed)
    events = []
    for t in range(seconds):
        devices = [DEVICES[i % len(DEVICES)] for i in range(per_second)]
        accepted = [bool(rng.random() < rate_fn(t, d)) for d in devices]
        fault = [not a and bool(rng.random() < 0.2) for a in accepted]
        events += monitor.observe(float(t), devices, accepted, fault)
    events += monitor.tick(float(seconds + 60))
    return events


class TestDriftAlerts:
    """The scenarios ops care about, with known change points."""

    def test_fleet_drop_raises_once_and_resolves_once(self) -> None:
        """95% -> 70% at t=300 raises one fleet alert within a window; recovery resolves it."""
        monitor = DriftMonitor(DriftSettings(window_s=60, accept_baseline=0.95, fault_baseline=1.0))
        events = _stream(monitor, 720, lambda t, d: 0.7 if 300 <= t < 480 else 0.95)
        fleet = [
            e for e in events if e["event"] == "acceptance-drift-alert" and e["scope"] == "fleet"
        ]
        assert [(e["state"], e["window_start"]) for e in fleet] == [
            ("raised", 300.0),
            ("resolved", 480.0),
        ]
        assert fleet[0]["delta"] < -0.1 and fleet[0]["n"] == 1200
        devices = [e for e in events if e["scope"] != "fleet"]
        assert devices == [], "the fleet alert explains every device: no device storm"

    def test_single_device_degrades(self) -> None:
        """One degrading device raises its own alert, not a fleet alert."""
        monitor = DriftMonitor(DriftSettings(window_s=60, accept_baseline=0.95, fault_baseline=1.0))
        events = _stream(monitor, 600, lambda t, d: 0.4 if d == "arm-3" and t >= 240 else 0.95)
        alerts = [e for e in events if e["event"] == "acceptance-drift-alert"]
        assert [(e["scope"], e["state"]) for e in alerts] == [("device:arm-3", "raised")]
        assert alerts[0]["window_start"] == 240.0

    def test_warm_up_baseline_is_named(self) -> None:
        """Without a configured baseline, the first full window becomes it, and events say so."""
        monitor = DriftMonitor(DriftSettings(window_s=60))
        events = _stream(monitor, 400, lambda t, d: 0.6 if t >= 200 else 0.95)
        raised = [
            e
            for e in events
            if e["state"] == "raised" and e["scope"] == "fleet" and e["metric"] == "accept_rate"
        ]
        assert len(raised) == 1
        assert raised[0]["baseline_source"] == "warm-up window 0-60"

    def test_fault_rate_alerts_separately(self) -> None:
        """A rising fault rate raises a fault-rate alert with its own threshold."""
        monitor = DriftMonitor(
            DriftSettings(
                window_s=60, accept_baseline=0.9, accept_threshold=0.5, fault_baseline=0.01
            )
        )
        events = _stream(monitor, 300, lambda t, d: 0.5 if t >= 120 else 0.99)
        kinds = {(e["event"], e["state"], e["scope"]) for e in events}
        assert ("fault-rate-alert", "raised", "fleet") in kinds
        assert not any(e["event"] == "acceptance-drift-alert" for e in events)

    def test_stationary_million_samples_raise_nothing(self) -> None:
        """A million samples at the baseline rate, windows of a few hundred: no false alarm."""
        monitor = DriftMonitor(
            DriftSettings(window_s=1.0, accept_baseline=0.95, fault_baseline=0.01)
        )
        rng = np.random.default_rng(42)
        events = []
        per_batch = 100
        for step in range(10_000):  # 4 batches a second -> 400 samples per fleet window
            devices = [DEVICES[i % 10] for i in range(per_batch)]
            draws = rng.random(per_batch)
            accepted = (draws < 0.95).tolist()
            fault = (draws > 0.99).tolist()
            events += monitor.observe(step * 0.25, devices, accepted, fault)
        assert events == []

    def test_tiny_windows_never_decide(self) -> None:
        """A window below the minimum sample count makes no decision at all."""
        monitor = DriftMonitor(DriftSettings(window_s=60, accept_baseline=0.95, min_samples=30))
        events = monitor.observe(0.0, ["a"] * 10, [False] * 10, [False] * 10)
        events += monitor.tick(120.0)
        assert events == []


@pytest.mark.parametrize(("k", "n"), [(0, 10), (10, 10), (5, 100), (950, 1000)])
def test_wilson_interval_contains_the_estimate(k: int, n: int) -> None:
    """The interval always contains k/n and stays inside [0, 1]."""
    low, high = wilson_interval(k, n, 4.0)
    assert 0.0 <= low <= k / n <= high <= 1.0


@pytest.mark.parametrize(
    ("k", "n", "p", "upper"),
    [(3, 40, 0.01, True), (34, 40, 0.95, False), (0, 5, 0.5, True), (900, 1000, 0.95, False)],
)
def test_binomial_tail_matches_direct_sum(k: int, n: int, p: float, upper: bool) -> None:
    """The early-stopping tail equals the plain sum of the pmf."""
    from math import comb

    from worker.monitoring.drift import binomial_tail

    indices = range(k, n + 1) if upper else range(k + 1)
    direct = sum(comb(n, i) * p**i * (1 - p) ** (n - i) for i in indices)
    assert binomial_tail(k, n, p, upper=upper) == pytest.approx(direct, rel=1e-9, abs=1e-300)
