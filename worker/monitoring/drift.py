"""Windowed drift alerts: once per episode, only when the change is large *and* significant.

Tumbling windows of ``window_s`` seconds (aligned to multiples of ``window_s`` since the
epoch), per scope: the whole fleet and each device. At the end of a window, the window's rate
is compared with the baseline. An alert is raised when

* ``|rate - baseline| >= threshold`` (the change matters), and
* an exact binomial test says the window is implausible under the baseline rate: the tail
  probability of a count at least this far from the baseline is below ``alpha`` (default
  1e-6, small because a fleet runs thousands of windows a day across its devices). Exact
  tails stay honest for small windows and rates near 0 or 1, where normal approximations
  (and Wilson intervals) alarm on a handful of events. The Wilson score interval at ``z`` is
  reported alongside as a readable error bar.

Windows with fewer than ``min_samples`` samples make no decision. A raised alert resolves when
a window's rate is back within ``threshold / 2`` of the baseline (hysteresis), so one episode
gives exactly one ``raised`` and one ``resolved`` event. Acceptance drifts in both directions;
the fault rate alerts only upwards, with its own threshold: semantic bottoms are the model
working as designed near a singularity, a sustained fault rate is a runtime-health problem.

Without a configured baseline, the first fleet window with enough samples becomes the
baseline (a warm-up reference window), and the events name it.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Event = dict[str, Any]
Metric = Literal["accept_rate", "fault_rate"]
FLEET = "fleet"


def binomial_tail(k: int, n: int, p: float, *, upper: bool) -> float:
    """P(X >= k) (``upper``) or P(X <= k) for X ~ Binomial(n, p), summed exactly in log space.

    Terms fall monotonically away from the mean, so the sum stops once they no longer matter.
    """
    if p <= 0.0:
        return 1.0 if (k <= 0 if upper else True) else 0.0
    if p >= 1.0:
        return 1.0 if (True if upper else k >= n) else 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    log_n = math.lgamma(n + 1)

    def term(i: int) -> float:
        return math.exp(
            log_n - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
        )

    total = 0.0
    indices = range(k, n + 1) if upper else range(k, -1, -1)
    for i in indices:
        value = term(i)
        total += value
        if value < total * 1e-17:
            break
    return min(total, 1.0)


def wilson_interval(successes: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True, slots=True)
class DriftSettings:
    """Thresholds and window geometry; every field has a command-line flag."""

    window_s: float = 60.0
    accept_threshold: float = 0.1
    fault_threshold: float = 0.05
    accept_baseline: float | None = None
    fault_baseline: float | None = None
    z: float = 4.0
    alpha: float = 1e-6
    min_samples: int = 30
    max_devices: int = 10_000
    per_device: bool = True


@dataclass(slots=True)
class _Window:
    start: float
    n: int = 0
    accepted: int = 0
    faults: int = 0


@dataclass(slots=True)
class _Scope:
    window: _Window
    raised: dict[str, bool] = field(
        default_factory=lambda: {"accept_rate": False, "fault_rate": False}
    )


@dataclass
class DriftMonitor:
    """Feeds per-sample outcomes into windows and returns alert events as windows close."""

    settings: DriftSettings = field(default_factory=DriftSettings)
    bundle_id: str | None = None
    _scopes: OrderedDict[str, _Scope] = field(default_factory=OrderedDict)
    _baseline: dict[str, float] = field(default_factory=dict)
    _baseline_source: str = "configured"
    _open_start: float = -math.inf

    def __post_init__(self) -> None:
        if self.settings.accept_baseline is not None:
            self._baseline["accept_rate"] = self.settings.accept_baseline
        if self.settings.fault_baseline is not None:
            self._baseline["fault_rate"] = self.settings.fault_baseline

    @property
    def raised_scopes(self) -> dict[str, list[str]]:
        """Scopes with an open alert, per metric (for metrics and health)."""
        out: dict[str, list[str]] = {"accept_rate": [], "fault_rate": []}
        for name, scope in self._scopes.items():
            for metric, raised in scope.raised.items():
                if raised:
                    out[metric].append(name)
        return out

    def observe(
        self, now: float, devices: list[str], accepted: list[bool], fault: list[bool]
    ) -> list[Event]:
        """Add one batch of samples seen at ``now``; return events of windows that closed."""
        if not len(devices) == len(accepted) == len(fault):
            raise ValueError(
                f"expected one outcome per device, found {len(devices)} devices, "
                f"{len(accepted)} accepted flags, {len(fault)} fault flags"
            )
        rejected = [row for row, ok in enumerate(accepted) if not ok]
        faults = [row for row, bad in enumerate(fault) if bad]
        return self.observe_rows(now, devices, rejected, faults)

    def observe_rows(
        self, now: float, devices: Sequence[str], rejected: Sequence[int], faults: Sequence[int]
    ) -> list[Event]:
        """``observe``, given the distinct rows that were not accepted and those that faulted."""
        events = self.tick(now)
        # Counter runs in C, but costs two dict operations per item: most samples are accepted,
        # so count every device once and only the few exceptions, not every accepted sample.
        seen = Counter(devices)
        not_ok = Counter(map(devices.__getitem__, rejected))
        bad = Counter(map(devices.__getitem__, faults))
        fleet = self._scope(FLEET, now)
        self._add(fleet.window, len(devices), len(devices) - len(rejected), len(faults))
        if self.settings.per_device:
            for device, n in seen.items():
                window = self._scope(f"device:{device}", now).window
                self._add(window, n, n - not_ok.get(device, 0), bad.get(device, 0))
        return events

    def tick(self, now: float) -> list[Event]:
        """Close every window that ended before ``now`` (call when idle, too)."""
        start = self._window_start(now)
        if start <= self._open_start:
            return []  # cheap on the hot path: nothing to do until a window boundary passes
        self._open_start = start
        events: list[Event] = []
        fleet = self._scopes.get(FLEET)
        if fleet is not None and fleet.window.start < start:
            events.extend(self._close(FLEET, fleet))
            fleet.window = _Window(start)
        fleet_raised = fleet.raised if fleet is not None else {}
        for name, scope in list(self._scopes.items()):
            if name != FLEET and scope.window.start < start:
                events.extend(self._close(name, scope, suppress=fleet_raised))
                scope.window = _Window(start)
        return events

    # --- internals ------------------------------------------------------------------------

    def _window_start(self, now: float) -> float:
        return math.floor(now / self.settings.window_s) * self.settings.window_s

    def _scope(self, name: str, now: float) -> _Scope:
        scope = self._scopes.get(name)
        if scope is None:
            self._open_start = max(self._open_start, self._window_start(now))
            scope = _Scope(_Window(self._window_start(now)))
            self._scopes[name] = scope
            if len(self._scopes) > self.settings.max_devices + 1:
                # Forget the least recently seen device, never the fleet.
                for old in self._scopes:
                    if old != FLEET and not any(self._scopes[old].raised.values()):
                        del self._scopes[old]
                        break
        else:
            self._scopes.move_to_end(name)
        return scope

    @staticmethod
    def _add(window: _Window, n: int, ok: int, bad: int) -> None:
        window.n += n
        window.accepted += ok
        window.faults += bad

    def _close(
        self, name: str, scope: _Scope, suppress: dict[str, bool] | None = None
    ) -> list[Event]:
        window = scope.window
        if window.n < self.settings.min_samples:
            return []
        if name == FLEET and "accept_rate" not in self._baseline:
            self._set_warmup_baseline(window)
            return []
        events = []
        for metric, successes in (("accept_rate", window.accepted), ("fault_rate", window.faults)):
            if metric in self._baseline:
                # While the fleet alert is open, it explains every device: no device storm.
                quiet = bool(suppress and suppress.get(metric))
                event = self._judge(name, scope, metric, successes, window, quiet)  # type: ignore[arg-type]
                if event is not None:
                    events.append(event)
        return events

    def _set_warmup_baseline(self, window: _Window) -> None:
        self._baseline.setdefault("accept_rate", window.accepted / window.n)
        self._baseline.setdefault("fault_rate", window.faults / window.n)
        self._baseline_source = (
            f"warm-up window {window.start:.0f}-{window.start + self.settings.window_s:.0f}"
        )

    def _judge(
        self,
        name: str,
        scope: _Scope,
        metric: Metric,
        successes: int,
        window: _Window,
        quiet: bool = False,
    ) -> Event | None:
        baseline = self._baseline[metric]
        threshold = (
            self.settings.accept_threshold
            if metric == "accept_rate"
            else self.settings.fault_threshold
        )
        rate = successes / window.n
        delta = rate - baseline
        low, high = wilson_interval(successes, window.n, self.settings.z)
        if metric == "accept_rate":
            # Two-sided: double the smaller tail on the side the window fell.
            p_value = min(
                1.0, 2 * binomial_tail(successes, window.n, baseline, upper=rate > baseline)
            )
            large = abs(delta) >= threshold
            calm = abs(delta) < threshold / 2
        else:  # only a rising fault rate is an alarm
            p_value = binomial_tail(successes, window.n, baseline, upper=True)
            large = delta >= threshold
            calm = delta < threshold / 2
        significant = p_value < self.settings.alpha
        raised = scope.raised[metric]
        if not raised and large and significant and not quiet:
            state = "raised"
        elif raised and calm:
            state = "resolved"
        else:
            return None
        scope.raised[metric] = state == "raised"
        event: Event = {
            "event": "acceptance-drift-alert" if metric == "accept_rate" else "fault-rate-alert",
            "state": state,
            "scope": name,
            "metric": metric,
            "window_start": window.start,
            "window_end": window.start + self.settings.window_s,
            "n": window.n,
            metric: rate,
            "baseline": baseline,
            "baseline_source": self._baseline_source,
            "delta": delta,
            "threshold": threshold,
            "statistic": "wilson_score_interval",
            "z": self.settings.z,
            "ci_low": low,
            "ci_high": high,
        }
        if self.bundle_id is not None:
            event["bundle_id"] = self.bundle_id
        return event
