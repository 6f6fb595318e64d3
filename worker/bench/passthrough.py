"""The ceiling: consume and re-produce the same bytes, no parsing, same client settings.

Consumer and producer take the worker's own librdkafka defaults (acks=all, idempotence,
lz4, linger), so the ratio to the worker measures the Python work in between, not a
difference in client tuning.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from worker.bench.kafka_io import worker_like_clients


def passthrough_msgs_per_s(
    bootstrap: str,
    source: str,
    sink: str,
    n: int,
    progress: Callable[[int], None],
    timeout_s: float = 300.0,
) -> float:
    """Messages per second, from the first consumed to the last one acknowledged."""
    consumer, producer = worker_like_clients(
        bootstrap, "passthrough", **{"enable.auto.offset.store": True}
    )
    consumer.subscribe([source])
    moved = 0
    started: float | None = None
    deadline = time.monotonic() + timeout_s
    try:
        while moved < n and time.monotonic() < deadline:
            batch = consumer.consume(512, 0.1)
            if batch and started is None:
                started = time.perf_counter()
            for message in batch:
                if message.error() is not None:
                    continue
                while True:
                    try:
                        producer.produce(sink, message.value(), message.key())
                        break
                    except BufferError:
                        producer.poll(0.05)
                moved += 1
            producer.poll(0)
            progress(moved)
        producer.flush(60)
        elapsed = time.perf_counter() - (started or time.perf_counter())
    finally:
        consumer.close()
    return moved / elapsed if elapsed > 0 else 0.0
