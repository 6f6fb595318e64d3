"""Prometheus metrics and the /healthz and /readyz probes, on one small HTTP server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)


def observe_many(histogram: Histogram, amounts: npt.NDArray[np.float64]) -> None:
    """``histogram.observe`` for a whole batch: one increment per bucket, not per value.

    Per-message observations were a measurable share of the hot path (each takes a lock).
    This reaches into prometheus_client's bucket list, and falls back to one call per
    value if a future version stores buckets differently.
    """
    if not amounts.size:
        return
    buckets = getattr(histogram, "_buckets", None)
    bounds = getattr(histogram, "_upper_bounds", None)
    total = getattr(histogram, "_sum", None)
    if not isinstance(buckets, list) or not isinstance(bounds, list) or total is None:
        for amount in amounts.tolist():
            histogram.observe(amount)
        return
    # observe() counts a value in the first bucket whose bound is >= the value.
    index = np.searchsorted(np.asarray(bounds, dtype=np.float64), amounts, side="left")
    counts = np.bincount(index, minlength=len(bounds))[: len(bounds)]
    total.inc(float(amounts.sum()))
    for bucket, count in zip(buckets, counts.tolist(), strict=True):
        if count:
            bucket.inc(count)


class Metrics:
    """Every metric the worker exports, on a registry of its own (tests can run several)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._lag_series: set[tuple[str, str]] = set()
        r = self.registry
        self.messages = Counter("scm_messages", "Feature messages consumed", registry=r)
        self.results = Counter("scm_results", "Results published, by route", ["route"], registry=r)
        self.solver_requests = Counter(
            "scm_solver_requests", "Solver requests published", registry=r
        )
        self.dead_letters = Counter(
            "scm_dead_letters", "Dead letters, by error code", ["code"], registry=r
        )
        self.batch_size = Histogram(
            "scm_batch_size",
            "Samples per inference call",
            buckets=(1, 4, 16, 64, 128, 256, 512, 1024, 4096),
            registry=r,
        )
        self.inference_seconds = Histogram(
            "scm_inference_seconds",
            "ONNX Runtime call time",
            buckets=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 1),
            registry=r,
        )
        self.end_to_end_seconds = Histogram(
            "scm_end_to_end_seconds",
            "Feature message timestamp to result produced",
            buckets=(1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1, 5, 30),
            registry=r,
        )
        self.consumer_lag = Gauge(
            "scm_consumer_lag", "Messages behind, per partition", ["topic", "partition"], registry=r
        )
        self.rate = Gauge(
            "scm_rate",
            "Rates of the latest batch (samples_* and elements_*)",
            ["metric"],
            registry=r,
        )
        self.drift_raised = Gauge(
            "scm_drift_alert_raised", "1 while an alert is open", ["scope", "metric"], registry=r
        )
        self.in_flight = Gauge("scm_in_flight", "Messages waiting for acknowledgements", registry=r)
        self.paused = Gauge(
            "scm_paused", "1 while partitions are paused (backpressure)", registry=r
        )
        self.policy_reloads = Counter(
            "scm_policy_reloads", "Policy reloads, by outcome", ["outcome"], registry=r
        )
        self.events_dropped = Counter(
            "scm_events_dropped", "Monitor events dropped by sinks", registry=r
        )
        self.broker_up = Gauge(
            "scm_broker_up", "1 while a broker answers the consumer, 0 during an outage", registry=r
        )
        self.broker_errors = Counter(
            "scm_broker_errors", "librdkafka client errors, by code", ["code"], registry=r
        )
        self.produce_retries = Counter(
            "scm_produce_retries",
            "Outputs the broker refused or did not acknowledge, queued again, by topic",
            ["topic"],
            registry=r,
        )

    def observe_stats(self, raw: str) -> None:
        """librdkafka statistics callback: per-partition consumer lag."""
        stats = orjson.loads(raw)
        current: set[tuple[str, str]] = set()
        for topic, info in stats.get("topics", {}).items():
            for partition, values in info.get("partitions", {}).items():
                lag = values.get("consumer_lag", -1)
                if partition != "-1" and lag >= 0:
                    self.consumer_lag.labels(topic, partition).set(lag)
                    current.add((topic, partition))
        # A partition handed to another replica must not keep reporting its last lag here.
        for stale in self._lag_series - current:
            self.consumer_lag.remove(*stale)
        self._lag_series = current


@dataclass
class Health:
    """Liveness and readiness as the loop reports them; read by the HTTP probes."""

    stall_timeout_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    bundle_loaded: bool = False
    broker_connected: bool = False
    assigned: int = 0
    heartbeat: float = 0.0
    last_progress: float = 0.0
    work_waiting: bool = False
    broker_error: str | None = None
    broker_down_since: float | None = None

    def __post_init__(self) -> None:
        self.heartbeat = self.last_progress = self.clock()

    def broker_down(self, reason: str) -> None:
        """The clients lost every broker (refused, timed out or silent)."""
        if self.broker_down_since is None:
            self.broker_down_since = self.clock()
        self.broker_connected = False
        self.broker_error = reason

    def broker_back(self) -> None:
        """A broker answers again."""
        self.broker_connected = True
        self.broker_down_since = None
        self.broker_error = None

    def beat(self, *, progressed: bool, work_waiting: bool) -> None:
        """Called once per loop iteration."""
        now = self.clock()
        self.heartbeat = now
        if progressed or not work_waiting:
            self.last_progress = now
        self.work_waiting = work_waiting

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """Unhealthy when the loop stopped turning, or turns without progress while work waits.

        A broker outage explains a lack of progress and does not fail liveness: restarting the
        worker cannot bring a broker back, and a restart loop would only add rebalances. The
        body says so, and readiness fails meanwhile. The loop must still turn.
        """
        now = self.clock()
        since_beat = now - self.heartbeat
        since_progress = now - self.last_progress
        outage = self.broker_down_since is not None
        stalled = since_beat > self.stall_timeout_s or (
            self.work_waiting and since_progress > self.stall_timeout_s and not outage
        )
        return not stalled, {
            "seconds_since_loop": round(since_beat, 3),
            "seconds_since_progress": round(since_progress, 3),
            "work_waiting": self.work_waiting,
            "stall_timeout_s": self.stall_timeout_s,
            "broker_connected": self.broker_connected,
            "broker_error": self.broker_error,
            "seconds_broker_down": None
            if self.broker_down_since is None
            else round(now - self.broker_down_since, 3),
        }

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready with a loaded bundle, a connected broker and assigned partitions."""
        detail = {
            "bundle_loaded": self.bundle_loaded,
            "broker_connected": self.broker_connected,
            "broker_error": self.broker_error,
            "assigned_partitions": self.assigned,
        }
        return self.bundle_loaded and self.broker_connected and self.assigned > 0, detail


def serve(
    port: int,
    metrics: Metrics,
    health: Health,
    host: str = "0.0.0.0",  # noqa: S104 - probes must be reachable from the orchestrator
) -> ThreadingHTTPServer:
    """Start the HTTP server on a daemon thread: /metrics, /healthz, /readyz."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif self.path in ("/healthz", "/readyz"):
                ok, detail = health.liveness() if self.path == "/healthz" else health.readiness()
                body = orjson.dumps({"ok": ok, **detail})
                self._send(200 if ok else 503, body, "application/json")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Probes are scraped every few seconds; they do not belong in the logs."""

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
