"""Producing when the client's queue is full: serve delivery reports until there is room."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from confluent_kafka import Producer

Headers = list[tuple[str, str | bytes | None]] | None
FULL_QUEUE_POLL_S = 0.05


def produce_waiting(
    producer: Producer,
    topic: str,
    value: bytes | None,
    key: bytes | None,
    *,
    headers: Headers = None,
    on_delivery: Callable[[Any, Any], None] | None = None,
) -> None:
    """``producer.produce``, but a full queue (BufferError) waits instead of failing.

    A full queue means the broker is slower than we are; polling serves delivery reports,
    which frees room, so this applies backpressure without buffering more or crashing.
    """
    while True:
        try:
            producer.produce(topic, value, key, headers=headers, on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(FULL_QUEUE_POLL_S)
