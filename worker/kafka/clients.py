"""librdkafka configuration for the worker's consumer and producer, set explicitly.

Every default here is a decision; user overrides (``--kafka-config``) win over all of them.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaException, Producer

from worker.config import WorkerConfig
from worker.errors import ConfigError

log = structlog.get_logger("worker.kafka")

CONSUMER_DEFAULTS: dict[str, Any] = {
    "auto.offset.reset": "earliest",  # a new group must not skip what fleets already sent
    # Offsets are stored by us only after every output of a message is acknowledged;
    # librdkafka then auto-commits what was stored (and we commit on revoke and shutdown).
    "enable.auto.offset.store": False,
    "enable.auto.commit": True,
    # 6 s is Apache Kafka's minimum session timeout; it keeps group joins at ~3 s on the
    # embedded broker instead of ~23 s with librdkafka's 45 s default.
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 1500,
    "isolation.level": "read_committed",
    "queued.max.messages.kbytes": 65536,  # bounds the prefetch buffer
    # Micro-batches gather for --max-wait-ms (5 ms); a fetch that may wait 500 ms (the
    # librdkafka default) on a broker that does not answer long polls as soon as data lands
    # (the embedded Tansu broker) holds every message that long. On Apache Kafka this only
    # sets how often an idle consumer asks again.
    "fetch.wait.max.ms": 10,
}

PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable.idempotence": True,  # per-partition order and no duplicates from retries
    "linger.ms": 5,
    "batch.num.messages": 10000,
    "compression.type": "lz4",
    "queue.buffering.max.messages": 200_000,
    "queue.buffering.max.kbytes": 262_144,
    "message.timeout.ms": 120_000,
}


# librdkafka's default message.max.bytes; Apache Kafka's broker default is just above it.
DEFAULT_RECORD_LIMIT = 1_000_000
# Dead-letter headers (the reason is capped at 1 KiB, a topic name at 249) and record framing;
# the key is counted separately.
RECORD_OVERHEAD_BYTES = 2048


def record_limit(config: WorkerConfig) -> int:
    """The largest record the producer sends (message.max.bytes, as configured)."""
    raw = config.kafka_overrides().get("message.max.bytes")
    try:
        return int(raw) if raw is not None else DEFAULT_RECORD_LIMIT
    except ValueError as exc:
        raise ConfigError(
            f"--kafka-config message.max.bytes: expected bytes, found {raw!r}"
        ) from exc


def _common(config: WorkerConfig) -> dict[str, Any]:
    return {
        "bootstrap.servers": config.bootstrap_servers,
        "client.id": f"scm-worker-{socket.gethostname()}",
        "error_cb": _log_error,
    }


def consumer_config(config: WorkerConfig) -> dict[str, Any]:
    """The consumer's librdkafka properties."""
    props = {
        **_common(config),
        **CONSUMER_DEFAULTS,
        "group.id": config.group_id,
        "auto.commit.interval.ms": config.commit_interval_ms,
    }
    if config.exactly_once:
        props["enable.auto.commit"] = False  # offsets travel inside the transaction
    props.update(config.kafka_overrides())
    return props


def producer_config(config: WorkerConfig) -> dict[str, Any]:
    """The producer's librdkafka properties."""
    props = {**_common(config), **PRODUCER_DEFAULTS}
    if config.exactly_once:
        props["transactional.id"] = config.transactional_id or f"scm-worker-{config.group_id}"
        # librdkafka requires a message timeout within the transaction timeout.
        props["transaction.timeout.ms"] = 60_000
        props["message.timeout.ms"] = 60_000
    props.update(config.kafka_overrides())
    props.pop("group.id", None)
    return props


def make_clients(
    config: WorkerConfig,
    *,
    stats_cb: Callable[[str], None] | None = None,
    error_cb: Callable[[Any], None] | None = None,
) -> tuple[Consumer, Producer]:
    """Build both clients; librdkafka's refusals become one ConfigError line."""
    props = consumer_config(config)
    producer_props = producer_config(config)
    if stats_cb is not None:
        # Statistics carry per-partition consumer lag, and show whether a broker answers;
        # every 2 s, so that health notices an outage within seconds (overridable).
        props = {"statistics.interval.ms": 2000, **props, "stats_cb": stats_cb}
    if error_cb is not None:
        props["error_cb"] = producer_props["error_cb"] = _chained(error_cb)
    try:
        return Consumer(props), Producer(producer_props)
    except KafkaException as exc:
        raise ConfigError(f"kafka client configuration: {exc.args[0].str()}") from exc


def _chained(callback: Callable[[Any], None]) -> Callable[[Any], None]:
    def both(error: Any) -> None:
        _log_error(error)
        callback(error)

    return both


def _log_error(error: Any) -> None:
    """librdkafka reports transport trouble here; it reconnects by itself."""
    log.warning(
        "kafka.client_error",
        code=error.name(),
        reason=error.str(),
        fatal=error.fatal(),
        retriable=error.retriable(),
    )
