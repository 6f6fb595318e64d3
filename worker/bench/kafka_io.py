"""The bench's own Kafka plumbing: fresh topics, a fast pre-fill, and counting what arrived."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, Producer

from worker.errors import FatalError
from worker.kafka.clients import CONSUMER_DEFAULTS, PRODUCER_DEFAULTS
from worker.kafka.embedded import create_topics
from worker.kafka.produce import produce_waiting

INPUT_PARTITIONS = 6  # room for --worker-processes 1, 2, 3 or 6 with equal shares
FILL_CHUNK = 10_000
READ_BATCH = 10_000
READ_WAIT_S = 0.1


@dataclass(frozen=True, slots=True)
class BenchTopics:
    """One set of worker topics; results and solver requests on one partition each."""

    input: str
    results: str
    solver: str
    dlq: str
    events: str

    @classmethod
    def fresh(cls, bootstrap: str, name: str, partitions: int = INPUT_PARTITIONS) -> BenchTopics:
        tag = f"{name}-{uuid.uuid4().hex[:8]}"
        topics = cls(f"in-{tag}", f"results-{tag}", f"solver-{tag}", f"dlq-{tag}", f"ev-{tag}")
        create_topics(bootstrap, [topics.input], partitions=partitions)
        create_topics(bootstrap, [topics.results, topics.solver, topics.dlq, topics.events])
        return topics

    @classmethod
    def outputs_for(cls, bootstrap: str, input_topic: str, name: str) -> BenchTopics:
        """Fresh output topics for another run over an existing input topic."""
        fresh = cls.fresh(bootstrap, name)
        return cls(input_topic, fresh.results, fresh.solver, fresh.dlq, fresh.events)


def group(name: str) -> str:
    """A consumer group nobody has used."""
    return f"bench-{name}-{uuid.uuid4().hex[:8]}"


def worker_like_clients(
    bootstrap: str, name: str, **consumer_overrides: Any
) -> tuple[Consumer, Producer]:
    """A consumer in a fresh group and a producer, both with the worker's own client settings,
    so that a baseline differs from the worker in its loop only."""
    consumer = Consumer(
        {
            **CONSUMER_DEFAULTS,
            "bootstrap.servers": bootstrap,
            "group.id": group(name),
            **consumer_overrides,
        }
    )
    return consumer, Producer({**PRODUCER_DEFAULTS, "bootstrap.servers": bootstrap})


def fill(
    bootstrap: str,
    topic: str,
    records: Sequence[tuple[bytes, bytes]],
    progress: Callable[[int], None] | None = None,
) -> None:
    """Produce pre-encoded records fast (large batches, lz4) and wait for every ack."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 500_000,
            "queue.buffering.max.kbytes": 1_048_576,
        }
    )
    for start in range(0, len(records), FILL_CHUNK):
        for key, value in records[start : start + FILL_CHUNK]:
            produce_waiting(producer, topic, value, key)
        producer.poll(0)
        if progress is not None:
            progress(start + FILL_CHUNK)
    if producer.flush(120):
        raise FatalError(f"bench: expected the broker to take {len(records)} records, it did not")


def reader(bootstrap: str, name: str, **extra: Any) -> Consumer:
    """A consumer reading from the start, committing nothing."""
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group(name),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "fetch.wait.max.ms": 10,
            **extra,
        }
    )


@dataclass(slots=True)
class Arrivals:
    """How many records came, the producer timestamp of the first, and when the last came."""

    count: int = 0
    first_created: float | None = None
    last_seen: float | None = None


def count_until(
    consumer: Consumer,
    expected: int,
    timeout_s: float,
    *,
    alive: Callable[[], bool] = lambda: True,
    each: Callable[[Any, float], None] | None = None,
    progress: Callable[[int], None] | None = None,
    into: Arrivals | None = None,
) -> Arrivals:
    """Consume until ``expected`` records arrived (or the timeout, or ``alive`` turns false).

    With ``into``, counting goes on from an earlier call's tally.
    """
    seen = into if into is not None else Arrivals()
    deadline = time.monotonic() + timeout_s
    while seen.count < expected and time.monotonic() < deadline:
        # consume(n, timeout) returns only when n records came or the timeout ran out, so a
        # 0.1 s timeout added up to 100 ms to every latency (one hop: p50 ~65 ms, p99 ~125 ms
        # at 20,000 msg/s and p50 55 ms even at 100 msg/s). Block in poll() for the first
        # record instead, then take whatever else is queued without waiting (p50 ~10 ms).
        first = consumer.poll(READ_WAIT_S)
        now = time.time()
        batch = [] if first is None else [first, *consumer.consume(READ_BATCH - 1, 0)]
        for message in batch:
            if message.error() is not None:
                continue
            if seen.first_created is None:
                seen.first_created = message.timestamp()[1] / 1000
            seen.count += 1
            if each is not None:
                each(message, now)
        if batch:
            seen.last_seen = now
        if progress is not None:
            progress(seen.count)
        if not batch and not alive():
            break
    return seen
