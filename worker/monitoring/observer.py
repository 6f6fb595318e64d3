"""The one object the loop reports to: counts, events, drift alerts, sinks, metrics, health."""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from worker.inference.result import StrictResult
from worker.monitoring.counts import BatchCounts, batch_counts
from worker.monitoring.drift import DriftMonitor, DriftSettings
from worker.monitoring.metrics import Health, Metrics, observe_many
from worker.monitoring.sinks import Sink
from worker.monitoring.zpml import ReferenceMonitor, fallback_routing_events
from worker.routing import SOLVER

DRIFT_ALERTS = frozenset(("acceptance-drift-alert", "fault-rate-alert"))


@dataclass(frozen=True, slots=True)
class MonitorSettings:
    """Monitoring knobs (each has a ``scm-worker run`` flag)."""

    drift: DriftSettings = field(default_factory=DriftSettings)
    reference_drift_threshold: float | None = None


def _seconds(timestamps: Sequence[float | None]) -> npt.NDArray[np.float64]:
    """The timestamps as an array, without the missing ones."""
    try:
        # array("d") converts a list of floats in C at a fraction of np.array's cost, and
        # refuses a None (TypeError), which saves searching for one.
        stamps = array("d", timestamps)  # type: ignore[type-var]
    except (TypeError, OverflowError):
        if None in timestamps:
            timestamps = [ts for ts in timestamps if ts is not None]
        return np.array(timestamps, dtype=np.float64)
    return np.frombuffer(stamps, dtype=np.float64)


def _rows_of(items: Sequence[str], value: str, count: int) -> list[int]:
    """The rows of the ``count`` items equal to ``value``.

    ``list.index`` scans in C, with one comparison per item; a Python call per item (as
    ``map(value.__eq__, items)`` makes) cost four times as much, and only a few rows match.
    """
    rows, row = [], -1
    for _ in range(count):
        row = items.index(value, row + 1)
        rows.append(row)
    return rows


class Observer:
    """Turns what the loop saw into events, metrics and health; never raises into the loop."""

    def __init__(
        self,
        bundle_id: str,
        settings: MonitorSettings,
        sink: Sink | None = None,
        metrics: Metrics | None = None,
        health: Health | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bundle_id = bundle_id
        self.sink = sink
        self.metrics = metrics
        self.health = health
        self.clock = clock
        self.reference = ReferenceMonitor(bundle_id, settings.reference_drift_threshold)
        self.drift = DriftMonitor(settings.drift, bundle_id)
        self.events_emitted = 0
        self._rate_gauges: dict[str, Any] = {}

    def emit(self, events: list[dict[str, Any]]) -> None:
        """Publish events the loop raises itself (policy reloads), through the same sinks."""
        self._emit(events)

    def _emit(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            event.setdefault("bundle_id", self.bundle_id)
            self.events_emitted += 1
            if self.sink is not None:
                self.sink.emit(event)
        # Only drift alerts change which scopes are raised; most batches carry none.
        if self.metrics is not None and any(e.get("event") in DRIFT_ALERTS for e in events):
            for metric, scopes in self.drift.raised_scopes.items():
                for scope in scopes:
                    self.metrics.drift_raised.labels(scope, metric).set(1)
            for event in events:
                if event.get("state") == "resolved":
                    self.metrics.drift_raised.labels(event["scope"], event["metric"]).set(0)

    def on_batch(
        self,
        result: StrictResult,
        routes: Sequence[str],
        devices: Sequence[str],
        timestamps: Sequence[float | None],
        infer_seconds: float,
    ) -> None:
        """One inference batch: reference events, routing events, drift windows, metrics."""
        now = self.clock()
        available = result.provenance_available
        events = self.reference.update(
            result.bottom_mask,
            result.gap_mask,
            fault_mask=result.fault_mask if available else None,
            semantic_bottom_mask=result.semantic_bottom_mask if available else None,
        )
        counts = batch_counts(result, routes)
        bottom = result.per_sample("bottom_mask")
        fault = result.per_sample("fault_mask") & bottom
        solver_count = counts.routes.get(SOLVER, 0)
        if solver_count:  # no sample routed, no fallback-routing event
            events += self._routing_events(result, routes, solver_count, bottom, fault)
        # Rows of the few samples that were not accepted or faulted: drift counts only those.
        rejected, faults = np.flatnonzero(bottom).tolist(), np.flatnonzero(fault).tolist()
        events += self.drift.observe_rows(now, devices, rejected, faults)
        self._emit(events)
        if self.metrics is not None:
            self._batch_metrics(counts, timestamps, infer_seconds, now)

    @staticmethod
    def _routing_events(
        result: StrictResult,
        routes: Sequence[str],
        solver_count: int,
        bottom: npt.NDArray[np.bool_],
        fault: npt.NDArray[np.bool_],
    ) -> list[dict[str, Any]]:
        codes = None
        if result.provenance_available:
            semantic = bottom & (result.per_sample("semantic_bottom_mask") | ~fault)
            codes = fault + 2 * semantic  # provenance codes, int64
        routed = np.zeros(len(routes), dtype=bool)
        routed[_rows_of(routes, SOLVER, solver_count)] = True
        return fallback_routing_events(routed, codes, bottom)

    def _batch_metrics(
        self,
        counts: BatchCounts,
        timestamps: Sequence[float | None],
        infer_seconds: float,
        now: float,
    ) -> None:
        assert self.metrics is not None
        m = self.metrics
        for route, count in counts.routes.items():
            m.results.labels(route).inc(count)
        m.solver_requests.inc(counts.routes.get(SOLVER, 0))
        m.batch_size.observe(counts.samples)
        m.inference_seconds.observe(infer_seconds)
        gauges = self._rate_gauges
        for name, value in counts.rates().items():
            gauge = gauges.get(name)
            if gauge is None:  # labels() takes a lock and builds a key on every call
                gauge = gauges[name] = m.rate.labels(name)
            gauge.set(value)
        observe_many(m.end_to_end_seconds, np.maximum(0.0, now - _seconds(timestamps)))

    def on_consumed(self, count: int) -> None:
        """Messages taken off the input topic."""
        if self.metrics is not None:
            self.metrics.messages.inc(count)

    def on_dead_letter(self, code: str) -> None:
        """One message turned into a dead letter."""
        if self.metrics is not None:
            self.metrics.dead_letters.labels(code).inc()

    def on_loop(self, *, progressed: bool, in_flight: int, paused: bool) -> None:
        """Once per loop iteration: heartbeat, idle drift windows, gauges."""
        if self.health is not None:
            self.health.beat(progressed=progressed, work_waiting=in_flight > 0)
        self._emit(self.drift.tick(self.clock()))
        if self.metrics is not None:
            self.metrics.in_flight.set(in_flight)
            self.metrics.paused.set(1 if paused else 0)

    def close(self) -> None:
        """Flush the sinks."""
        if self.sink is not None:
            self.sink.close()
