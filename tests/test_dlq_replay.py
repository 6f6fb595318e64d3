"""`scm-worker dlq replay`: dead letters go back with their original bytes, nothing else does."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import orjson
import pytest
from confluent_kafka import Producer

from tests.kafka_support import any_broker, read_all
from worker.dlq import REPLAYED_CODE, REPLAYED_FROM, plan_replay
from worker.kafka.embedded import create_topics
from worker.replay import Recorded
from worker.wire.deadletter import dead_letter_headers


def dead_letter(code: str, key: bytes, value: bytes, offset: int) -> Recorded:
    headers = tuple(
        (name, value if isinstance(value, bytes) else str(value).encode())
        for name, value in dead_letter_headers(code, "why", "features", 0, offset)
    )
    return Recorded(value, "dead-letters", 0, offset, key, headers)


def test_plan_keeps_bytes_and_filters_by_code() -> None:
    records = [
        dead_letter("invalid_json", b"k1", b"{oops", 10),
        dead_letter("shape_mismatch", b"k2", b'{"a": 1}', 11),
        Recorded(b"no headers", "dead-letters", 0, 12),
    ]
    plan = plan_replay(records, frozenset({"shape_mismatch"}))
    assert plan.read == {"invalid_json": 1, "shape_mismatch": 1, "unknown": 1}
    assert plan.selected == {"shape_mismatch": 1}
    assert plan.send == [
        (
            b"k2",
            b'{"a": 1}',
            [(REPLAYED_FROM, b"dead-letters/0/11"), (REPLAYED_CODE, b"shape_mismatch")],
        )
    ]
    assert len(plan_replay(records, None).send) == 3


@pytest.fixture(scope="module", name="bootstrap")
def _bootstrap() -> Iterator[str]:
    with any_broker() as servers:
        yield servers


@pytest.mark.kafka
def test_replay_to_the_input_topic(bootstrap: str) -> None:
    """An independent reader of the target topic sees exactly the selected dead letters."""
    tag = uuid.uuid4().hex[:8]
    dlq, target = f"dlq-{tag}", f"features-{tag}"
    create_topics(bootstrap, [dlq, target])
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(30):
        code = "too_large" if i % 3 == 0 else "invalid_json"
        headers = list(dead_letter_headers(code, "why", "features", 0, i))
        producer.produce(dlq, f"value-{i}".encode(), f"arm-{i}".encode(), headers=headers)
    assert producer.flush(30) == 0
    command = [sys.executable, "-m", "worker", "dlq", "replay", "--bootstrap-servers", bootstrap,
               "--from-topic", dlq, "--to-topic", target, "--code", "too_large"]  # fmt: skip
    dry = subprocess.run([*command, "--dry-run"], capture_output=True, text=True, check=True)
    assert orjson.loads(dry.stdout)["sent"] == 0
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)
    report = orjson.loads(done.stdout)
    assert report == {
        "read": {"too_large": 10, "invalid_json": 20},
        "selected": {"too_large": 10},
        "sent": 10,
        "failed": 0,
        "dry_run": False,
    }
    seen = read_all(bootstrap, target, 10, timeout_s=30)
    assert sorted(m.value() for m in seen) == sorted(f"value-{i}".encode() for i in range(0, 30, 3))
    for message in seen:
        headers = dict(message.headers() or [])
        index = int(message.value().split(b"-")[1])
        assert message.key() == f"arm-{index}".encode()
        assert headers[REPLAYED_FROM] == f"{dlq}/0/{index}".encode()
