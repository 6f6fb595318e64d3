"""Whether a broker answers, from librdkafka's error callback and statistics.

librdkafka reconnects by itself and never reports "back up", and a blackholed connection stays
``UP`` until a request times out (a minute by default). So the statistics decide: a consumer
in a group sends a heartbeat every 1.5 s (and fetches while it has room), so a broker that
answers makes the received count grow. No growth for SILENCE_S of the statistics' own clock
(statistics queue up while the loop is busy) is an outage; ``_ALL_BROKERS_DOWN`` is one at once.
"""

from __future__ import annotations

from typing import Any

import orjson
import structlog
from confluent_kafka import KafkaError

from worker.monitoring.metrics import Health, Metrics

log = structlog.get_logger("worker.broker")

# Codes after which no broker can be assumed to answer until statistics say otherwise.
DOWN_CODES = frozenset({KafkaError._ALL_BROKERS_DOWN})
# Over two missed heartbeats (heartbeat.interval.ms 1500): a busy broker is not a dead one.
SILENCE_S = 4.0


class BrokerWatch:
    """Feeds health and metrics; called on the loop's thread by librdkafka's callbacks."""

    def __init__(self, health: Health | None, metrics: Metrics | None) -> None:
        self.health = health
        self.metrics = metrics
        self._received = -1
        self._answered_at = 0.0
        self._up = True

    def on_error(self, error: Any) -> None:
        """librdkafka's ``error_cb``."""
        if self.metrics is not None:
            self.metrics.broker_errors.labels(error.name()).inc()
        if error.code() in DOWN_CODES:
            self._set(False, f"{error.name()}: {error.str()}")

    def on_stats(self, raw: str) -> None:
        """librdkafka's ``stats_cb``: consumer lag, then whether any broker answered."""
        if self.metrics is not None:
            self.metrics.observe_stats(raw)
        stats = orjson.loads(raw)
        brokers = stats.get("brokers", {}).values()
        now = int(stats.get("ts", 0)) / 1e6  # librdkafka's monotonic clock, microseconds
        received = sum(int(b.get("rx", 0)) for b in brokers)
        if received > self._received:
            self._answered_at = now
        self._received = received
        connected = any(b.get("state") == "UP" for b in brokers)
        silent = now - self._answered_at
        states = sorted({str(b.get("state")) for b in brokers})
        self._set(
            connected and silent < SILENCE_S,
            f"no broker answered for {silent:.0f} s (connection states {states})",
        )

    def _set(self, up: bool, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.broker_up.set(1 if up else 0)
        if self.health is not None:
            if up:
                self.health.broker_back()
            else:
                self.health.broker_down(reason)
        if up != self._up:
            self._up = up
            if up:
                log.info("worker.broker_up")
            else:
                log.warning("worker.broker_down", reason=reason)
