"""The demo's independent reader: every topic from the beginning, no consumer group."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from worker.demo.tally import Tally
from worker.errors import FatalError


class TopicReader:
    """Reads every partition of the given topics (role -> topic) into a tally."""

    def __init__(self, bootstrap: str, topics: Mapping[str, str]) -> None:
        self.bootstrap = bootstrap
        self.roles = {topic: role for role, topic in topics.items()}
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"scm-demo-reader-{uuid.uuid4().hex[:8]}",  # never joined
                "enable.auto.commit": False,
                "enable.partition.eof": False,
            }
        )
        metadata = self.consumer.list_topics(timeout=10)
        self.consumer.assign(
            [
                TopicPartition(topic, partition, OFFSET_BEGINNING)
                for topic in topics.values()
                for partition in metadata.topics[topic].partitions
            ]
        )

    def read(self, tally: Tally, timeout_s: float) -> int:
        """Add what arrived within ``timeout_s`` to ``tally``; returns the record count."""
        messages = self.consumer.consume(10_000, timeout_s)
        count = 0
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise FatalError(f"demo reader: expected records, found {error.str()}")
                continue
            raw: Any = message.headers() or []
            headers = {str(k): v if isinstance(v, bytes) else b"" for k, v in raw}
            tally.add(self.roles[message.topic() or ""], message.value(), headers)
            count += 1
        return count

    def committed(self, group: str, topic: str) -> int:
        """The sum of ``group``'s committed offsets on ``topic`` (0 where none)."""
        probe = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group})
        try:
            metadata = probe.list_topics(topic, timeout=10)
            partitions = [TopicPartition(topic, p) for p in metadata.topics[topic].partitions]
            return sum(max(tp.offset, 0) for tp in probe.committed(partitions, timeout=10))
        finally:
            probe.close()

    def close(self) -> None:
        """Leave nothing open."""
        self.consumer.close()
