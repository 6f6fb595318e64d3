"""Publish a simulated fleet's messages to Kafka at a steady rate (the I/O half)."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from pydantic import Field

from worker.config import ServiceConfig
from worker.errors import ConfigError
from worker.fleet.simulate import Fleet, FleetShape
from worker.kafka.produce import produce_waiting

log = structlog.get_logger("worker.fleet")

TICK_S = 0.01


class FleetConfig(ServiceConfig):
    """``scm-worker fleet`` settings."""

    topic: str = Field(min_length=1)
    devices: int = Field(default=20, ge=1, le=100_000)
    rate: float = Field(default=200.0, gt=0, description="messages per second, whole fleet")
    duration: float = Field(default=30.0, ge=0, description="seconds; 0 runs until stopped")
    seed: int = 7
    sweeper_fraction: float = Field(default=0.25, ge=0, le=1)
    broken_fraction: float = Field(default=0.01, ge=0, le=1)
    malformed_fraction: float = Field(default=0.005, ge=0, le=1)
    degrade_after: float | None = Field(default=None, ge=0)

    def shape(self) -> FleetShape:
        """The pure simulator's view of the configuration."""
        return FleetShape(
            devices=self.devices,
            sweeper_fraction=self.sweeper_fraction,
            broken_fraction=self.broken_fraction,
            malformed_fraction=self.malformed_fraction,
            degrade_after_s=self.degrade_after,
        )


@dataclass
class Published:
    """What the fleet sent and the broker acknowledged, by kind."""

    sent: Counter[str] = field(default_factory=Counter)
    acked: int = 0
    failed: int = 0

    def summary(self) -> dict[str, Any]:
        """The figures a tie-out needs."""
        return {
            "sent": sum(self.sent.values()),
            **self.sent,
            "acked": self.acked,
            "failed": self.failed,
        }


def publish(config: FleetConfig, stop: threading.Event) -> Published:
    """Send at ``config.rate`` until ``config.duration`` ends or ``stop`` is set, then flush."""
    props: dict[str, Any] = {
        "bootstrap.servers": config.bootstrap_servers,
        "client.id": f"scm-fleet-{socket.gethostname()}",
        "linger.ms": 5,
        "compression.type": "lz4",
        "enable.idempotence": True,
        **config.kafka_overrides(),
    }
    try:
        producer = Producer(props)
    except KafkaException as exc:
        raise ConfigError(f"kafka client configuration: {exc.args[0].str()}") from exc
    started = time.time()
    fleet = Fleet(config.shape(), config.seed, uuid.uuid4().hex[:8], started)
    out = Published()

    def delivered(err: KafkaError | None, _: Message) -> None:
        if err is None:
            out.acked += 1
        else:
            out.failed += 1
            if out.failed == 1 or out.failed % 1000 == 0:  # not once per message in an outage
                log.warning("fleet.produce_failed", reason=err.str(), failed=out.failed)

    clock = time.monotonic()
    log.info("fleet.started", topic=config.topic, devices=config.devices, rate=config.rate)
    while not stop.is_set():
        elapsed = time.monotonic() - clock
        if config.duration and elapsed >= config.duration:
            break
        due = int(elapsed * config.rate) + 1 - fleet.sent
        for message in fleet.messages(due, time.time()):
            produce_waiting(
                producer, config.topic, message.value, message.key, on_delivery=delivered
            )
            out.sent[message.kind] += 1
        producer.poll(0)
        stop.wait(TICK_S)
    producer.flush(30)
    log.info("fleet.stopped", **out.summary())
    return out
