"""Read a topic from a start point to its end, without a consumer group's commits."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from worker.errors import ConfigError
from worker.replay import Recorded


def read_topic(
    bootstrap: str,
    topic: str,
    *,
    from_offset: int | None = None,
    from_time_ms: int | None = None,
    max_messages: int | None = None,
    idle_timeout_s: float = 5.0,
) -> Iterator[Recorded]:
    """Every partition from ``from_offset`` (default: the beginning) or ``from_time_ms``.

    Stops at ``max_messages`` or once nothing arrives for ``idle_timeout_s`` after the end
    offsets seen at the start were reached (broker watermarks may be approximate).
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"replay-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        if topic not in metadata.topics or metadata.topics[topic].error is not None:
            raise ConfigError(f"--from-topic {topic}: expected an existing topic, found none")
        partitions = [TopicPartition(topic, p) for p in metadata.topics[topic].partitions]
        if from_time_ms is not None:
            for tp in partitions:
                tp.offset = from_time_ms
            partitions = consumer.offsets_for_times(partitions, timeout=10)
        elif from_offset is not None:
            for tp in partitions:
                tp.offset = from_offset
        else:
            for tp in partitions:
                tp.offset = -2  # OFFSET_BEGINNING
        consumer.assign(partitions)
        count, idle_since = 0, time.monotonic()
        at_end: set[int] = set()
        while max_messages is None or count < max_messages:
            message = consumer.poll(0.5)
            if message is None:
                if len(at_end) == len(partitions) or time.monotonic() - idle_since > idle_timeout_s:
                    return
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition() or 0)
                    if len(at_end) == len(partitions):
                        return
                continue
            idle_since = time.monotonic()
            count += 1
            raw: Any = message.headers() or []
            yield Recorded(
                message.value(),
                topic,
                message.partition() or 0,
                message.offset() or 0,
                message.key(),
                tuple((str(k), v if isinstance(v, bytes) else b"") for k, v in raw),
            )
    finally:
        consumer.close()
