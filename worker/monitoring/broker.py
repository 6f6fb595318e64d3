"""Whether a broker answers, from librdkafka's error callback and statistics.

librdkafka reconnects by itself and never reports "back up", and a blackholed connection stays
``UP`` until a request times out (a minute by default). So the statistics decide: the consumer
always has a fetch or a heartbeat outstanding, and a broker that answers makes the received
count grow between two statistics. ``_ALL_BROKERS_DOWN`` marks an outage at once.
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


class BrokerWatch:
    """Feeds health and metrics; called on the loop's thread by librdkafka's callbacks."""

    def __init__(self, health: Health | None, metrics: Metrics | None) -> None:
        self.health = health
        self.metrics = metrics
        self._received = -1
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
        brokers = orjson.loads(raw).get("brokers", {}).values()
        received = sum(int(b.get("rx", 0)) for b in brokers)
        connected = any(b.get("state") == "UP" for b in brokers)
        # The first statistics have nothing to compare with: the connection state decides.
        up = connected and (self._received < 0 or received > self._received)
        states = sorted({str(b.get("state")) for b in brokers})
        self._set(up, f"no broker answered since the last statistics (states {states})")
        self._received = received

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
