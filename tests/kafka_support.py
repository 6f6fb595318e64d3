"""Real-broker test support: pick a broker, isolate topics, read what a second consumer sees.

Broker choice, in order: ``KAFKA_BOOTSTRAP_SERVERS`` (for example Apache Kafka from
docker-compose.yml); an Apache Kafka container via testcontainers when a Docker engine answers;
otherwise the embedded Tansu broker. Tests never mock Kafka.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Message, Producer, TopicPartition

from worker.kafka.embedded import EmbeddedBroker, create_topics, wait_for_metadata

APACHE_KAFKA_IMAGE = "apache/kafka:3.9.1"


@contextlib.contextmanager
def any_broker() -> Iterator[str]:
    """Yield bootstrap servers of the first broker available, in the documented order."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        wait_for_metadata(configured)
        yield configured
        return
    container = _docker_kafka()
    if container is not None:
        with container as kafka:
            yield kafka.get_bootstrap_server()
        return
    with EmbeddedBroker() as broker:
        yield broker.bootstrap_servers


def _docker_kafka() -> Any:
    try:
        import docker  # type: ignore[import-not-found]
        from testcontainers.kafka import KafkaContainer  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        docker.from_env().ping()
    except Exception:  # no engine answering: the documented fallback is the embedded broker
        return None
    return KafkaContainer(APACHE_KAFKA_IMAGE).with_kraft()


@dataclass(frozen=True)
class Topics:
    """A fresh set of topic names and a group for one test."""

    input: str
    results: str
    solver: str
    dlq: str
    group: str

    @classmethod
    def fresh(cls, bootstrap: str, partitions: int = 3) -> Topics:
        tag = uuid.uuid4().hex[:10]
        topics = cls(
            f"features-{tag}", f"results-{tag}", f"solver-{tag}", f"dlq-{tag}", f"group-{tag}"
        )
        create_topics(bootstrap, [topics.input], partitions=partitions)
        create_topics(bootstrap, [topics.results, topics.solver, topics.dlq], partitions=1)
        return topics


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    """Produce (key, value) records and wait until the broker acknowledged all of them."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for key, value in records:
        producer.produce(topic, value, key)
        producer.poll(0)
    remaining = producer.flush(30)
    assert remaining == 0, f"{remaining} test records not acknowledged"


def independent_reader(bootstrap: str, topic: str, prefix: str = "reader") -> Consumer:
    """A consumer in a group of its own, from the start, committing nothing: what a second,
    unrelated subscriber of ``topic`` sees."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{prefix}-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic])
    return consumer


def read_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 60.0) -> list[Message]:
    """Read a topic from the start with an independent consumer until ``expected`` records."""
    consumer = independent_reader(bootstrap, topic)
    records: list[Message] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if message.error() is None:
                    records.append(message)
        # Linger briefly to catch records beyond what we expected (duplicates, strays).
        records.extend(m for m in consumer.consume(1000, 1.0) if m.error() is None)
    finally:
        consumer.close()
    return records


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets per partition, as the broker reports them."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        found = consumer.committed(
            [TopicPartition(topic, p) for p in range(partitions)], timeout=10
        )
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in found}


def worker_command(bootstrap: str, topics: Topics, bundle: Path, *extra: str) -> list[str]:
    """The exact command line an operator runs."""
    return [
        sys.executable,
        "-m",
        "worker",
        "run",
        "--bundle",
        str(bundle),
        "--bootstrap-servers",
        bootstrap,
        "--group-id",
        topics.group,
        "--input-topic",
        topics.input,
        "--results-topic",
        topics.results,
        "--solver-topic",
        topics.solver,
        "--dlq-topic",
        topics.dlq,
        *extra,
    ]


def start_worker(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``scm-worker run`` as its own process, logs to a file for post-mortems."""
    with log_path.open("ab") as handle:  # the child keeps its own descriptor
        return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
