"""``scm-worker run`` end to end against a real broker, checked by an independent consumer."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import FIXTURES
from tests.fault_support import message_id, read_covering
from tests.kafka_support import (
    Topics,
    any_broker,
    committed,
    produce,
    read_all,
    start_worker,
    worker_command,
)
from worker.cli import main
from worker.config import RoutingPolicy
from worker.fleet.simulate import simulate_readings
from worker.inference import FIELDS, StrictResult
from worker.routing import route_samples

pytestmark = pytest.mark.kafka

BUNDLE = FIXTURES / "v061_reference_robotics_seed7" / "bundle"
PARTITIONS = 3


@pytest.fixture(scope="module", name="bootstrap")
def _bootstrap() -> Iterator[str]:
    with any_broker() as servers:
        yield servers


def valid_messages(n: int, seed: int) -> list[tuple[bytes, bytes, dict[str, Any]]]:
    """Robot readings as fleets send them: Python's json, so NaN/Infinity appear as tokens."""
    readings = simulate_readings(n, np.random.default_rng(seed)).astype(np.float64)
    readings[3, 1] = np.inf
    out = []
    for i, row in enumerate(readings):
        values: list[float | None] = [float(v) for v in row]
        if i == 5:
            values[0] = None  # a null entry is a broken reading, not a malformed message
        message = {
            "message_id": f"m-{seed}-{i}",
            "device_id": f"arm-{i % 7}",
            "inputs": {"input_0": values},
            "ts": 1_700_000_000 + i,
            "context": {"shift": "night", "i": i},
        }
        out.append((f"arm-{i % 7}".encode(), json.dumps(message).encode(), message))
    return out


MALFORMED: list[tuple[str, bytes]] = [
    ("invalid_json", b'{"message_id": "x", '),
    ("invalid_json", b"\xff\xfe not utf-8"),
    ("invalid_message", b"[1, 2, 3]"),
    ("invalid_message", b'{"device_id": "arm-1", "inputs": {"input_0": [0, 0, 0, 0]}}'),
    (
        "unknown_input",
        b'{"message_id": "u1", "device_id": "a", '
        b'"inputs": {"input_0": [0, 0, 0, 0], "extra": [1]}}',
    ),
    ("shape_mismatch", b'{"message_id": "s1", "device_id": "a", "inputs": {"input_0": [1, 2, 3]}}'),
    (
        "shape_mismatch",
        b'{"message_id": "s2", "device_id": "a", "inputs": {"input_0": [[1, 2], [3, 4]]}}',
    ),
    (
        "too_large",
        b'{"message_id": "big", "device_id": "a", "inputs": {"input_0": [0, 0, 0, 0]}, '
        b'"context": {"blob": "' + b"x" * 5000 + b'"}}',
    ),
]


def _produce_stream(bootstrap: str, topics: Topics, valid: list[tuple[bytes, bytes, Any]]) -> None:
    records: list[tuple[bytes | None, bytes]] = [(k, v) for k, v, _ in valid]
    for i, (_, value) in enumerate(MALFORMED):
        records.insert(7 * i + 1, (b"bad-device", value))
    produce(bootstrap, topics.input, records)


def _expected(
    valid: list[tuple[bytes, bytes, dict[str, Any]]], tmp_path: Path
) -> dict[str, dict[str, Any]]:
    """What ``scm-worker bundle run`` says about the same inputs, per message_id."""
    x = np.array(
        [[math.nan if v is None else v for v in m["inputs"]["input_0"]] for _, _, m in valid],
        dtype=np.float64,
    )
    np.savez(tmp_path / "in.npz", input_0=x)
    assert (
        main(
            [
                "bundle",
                "run",
                str(BUNDLE),
                "--inputs",
                str(tmp_path / "in.npz"),
                "--out",
                str(tmp_path / "out.npz"),
            ]
        )
        == 0
    )
    with np.load(tmp_path / "out.npz") as data:
        result = StrictResult(**{name: data[name] for name in FIELDS})
    routes = route_samples(result, RoutingPolicy())
    return {
        m["message_id"]: {
            "decoded": result.decoded[i],
            "bottom": result.bottom_mask[i],
            "gap": result.gap_mask[i],
            "route": routes[i],
            "provenance": result.bottom_provenance[i],
        }
        for i, (_, _, m) in enumerate(valid)
    }


def _end_offsets(bootstrap: str, topic: str, total: int) -> dict[int, int]:
    """End offsets counted by consuming (the embedded broker's watermarks are approximate)."""
    ends: dict[int, int] = dict.fromkeys(range(PARTITIONS), 0)
    for message in read_all(bootstrap, topic, total):
        ends[message.partition()] = max(ends.get(message.partition(), 0), message.offset() + 1)
    return ends


def _wait_for(
    bootstrap: str, topic: str, count: int, worker: subprocess.Popen[bytes], log: Path
) -> list[Any]:
    records = read_all(bootstrap, topic, count, timeout_s=90)
    assert worker.poll() is None, f"worker died: {log.read_text()[-3000:]}"
    return records


class TestMixedStream:
    """Valid, bottom-producing and malformed messages: nothing lost, nothing faked."""

    @pytest.mark.parametrize(
        "mode",
        [
            (),
            ("--exactly-once",),
            # A tiny producer queue and in-flight cap drive the BufferError and pause paths.
            ("--kafka-config", "queue.buffering.max.messages=8", "--max-in-flight", "4"),
        ],
        ids=["at-least-once", "exactly-once", "backpressure"],
    )
    def test_results_solver_requests_dead_letters_and_commits(
        self, bootstrap: str, tmp_path: Path, mode: tuple[str, ...]
    ) -> None:
        """One result per valid message, one dead letter per malformed one, offsets committed."""
        topics = Topics.fresh(bootstrap, PARTITIONS)
        valid = valid_messages(400, seed=1)
        _produce_stream(bootstrap, topics, valid)
        expected = _expected(valid, tmp_path)
        log = tmp_path / "worker.log"
        worker = start_worker(
            worker_command(
                bootstrap,
                topics,
                BUNDLE,
                "--max-message-bytes",
                "4096",
                "--max-batch",
                "64",
                *mode,
            ),
            log,
        )
        try:
            results = _wait_for(bootstrap, topics.results, len(valid), worker, log)
            dead = _wait_for(bootstrap, topics.dlq, len(MALFORMED), worker, log)
            n_solver = sum(1 for e in expected.values() if e["route"] == "solver")
            solver = read_all(bootstrap, topics.solver, n_solver)
        finally:
            worker.send_signal(signal.SIGTERM)
            code = worker.wait(timeout=15)
        assert code == 0, log.read_text()[-3000:]
        if "--max-in-flight" in mode:
            assert b'"paused":true' in log.read_bytes(), "backpressure never engaged"

        # Exactly one result per valid message, equal to bundle run's answer.
        by_id = Counter(json.loads(m.value())["message_id"] for m in results)
        assert set(by_id) == set(expected) and max(by_id.values()) == 1
        for message in results:
            body = json.loads(message.value())
            want = expected[body["message_id"]]
            decoded = np.array(
                [np.nan if v is None else v for v in body["outputs"]["decoded"]], dtype=np.float32
            )
            assert np.array_equal(decoded, want["decoded"], equal_nan=True)
            assert body["outputs"]["bottom_mask"] == want["bottom"].tolist()
            assert body["outputs"]["gap_mask"] == want["gap"].tolist()
            assert body["outputs"]["bottom_provenance"] == want["provenance"].tolist()
            assert body["route"] == want["route"]
            assert body["bottom"] == bool(want["bottom"].any())
            assert body["context"]["shift"] == "night"
            assert body["source"]["topic"] == topics.input
            assert message.key() == body["device_id"].encode()
            if body["bottom"]:
                assert all(
                    v is None
                    for v, b in zip(
                        body["outputs"]["decoded"], body["outputs"]["bottom_mask"], strict=True
                    )
                    if b
                )

        # Results keep per-partition order (the results topic has one partition here).
        seen: dict[int, int] = {}
        for message in results:
            source = json.loads(message.value())["source"]
            assert source["offset"] > seen.get(source["partition"], -1)
            seen[source["partition"]] = source["offset"]

        # One solver request per routed sample, carrying the original inputs.
        assert len(solver) == n_solver
        assert {json.loads(m.value())["message_id"] for m in solver} == {
            k for k, e in expected.items() if e["route"] == "solver"
        }

        # One dead letter per malformed message, original bytes, a reason, the source.
        assert len(dead) == len(MALFORMED)
        assert sorted(m.value() for m in dead) == sorted(v for _, v in MALFORMED)
        codes = {m.value(): dict(m.headers())["scm-error-code"].decode() for m in dead}
        assert codes == {v: c for c, v in MALFORMED}
        for message in dead:
            headers = dict(message.headers())
            assert headers["scm-error"] and headers["scm-source-topic"] == topics.input.encode()

        # Committed offsets equal the end of every input partition.
        total = len(valid) + len(MALFORMED)
        positions = committed(bootstrap, topics.group, topics.input, PARTITIONS)
        # librdkafka reports "nothing committed" as -1001; only an empty partition may say so.
        positions = {p: max(o, 0) for p, o in positions.items()}
        assert positions == _end_offsets(bootstrap, topics.input, total)


class TestCrashSafety:
    """SIGKILL mid-stream, restart: every valid message has a result; duplicates are late."""

    def test_sigkill_then_restart(self, bootstrap: str, tmp_path: Path) -> None:
        """Nothing is lost across a kill; duplicates only follow the last commit."""
        topics = Topics.fresh(bootstrap, PARTITIONS)
        valid = valid_messages(3000, seed=2)
        produce(bootstrap, topics.input, [(k, v) for k, v, _ in valid])
        command = worker_command(
            bootstrap, topics, BUNDLE, "--max-batch", "32", "--commit-interval-ms", "200"
        )
        log = tmp_path / "worker.log"
        first = start_worker(command, log)
        read_all(bootstrap, topics.results, 500, timeout_s=90)  # well under way
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        before_restart = committed(bootstrap, topics.group, topics.input, PARTITIONS)

        second = start_worker(command, log)
        wanted = {m["message_id"] for _, _, m in valid}
        try:
            # Until every message id arrived: counting records would stop early once the
            # restart's duplicates count towards the total (it did, in one run in ten or so).
            results = read_covering(bootstrap, topics.results, wanted, message_id, 120)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=15) == 0, log.read_text()[-3000:]
        ids = Counter(json.loads(m.value())["message_id"] for m in results)
        assert set(ids) == wanted
        for message in results:
            body = json.loads(message.value())
            if ids[body["message_id"]] > 1:
                source = body["source"]
                floor = before_restart.get(source["partition"], -1001)
                assert source["offset"] >= max(floor, 0), "a committed message was redone"


class TestStartup:
    """Bad flags and bad bundles stop the worker at once with one clear line."""

    def test_invalid_bundle(self, tmp_path: Path) -> None:
        """A bundle that fails validation exits non-zero before touching Kafka."""
        topics = Topics("in", "out", "solver", "dlq", f"g-{uuid.uuid4().hex[:6]}")
        command = worker_command(
            "127.0.0.1:1", topics, FIXTURES / "v051_legacy_v1_scalar" / "bundle"
        )
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 3
        assert done.stderr.strip().splitlines()[-1].startswith("scm-worker: error:")
        assert "--allow-unverified-legacy" in done.stderr

    def test_bad_flag(self) -> None:
        """An unknown choice is a usage error (exit 2)."""
        topics = Topics("in", "out", "solver", "dlq", "g")
        command = worker_command("127.0.0.1:1", topics, BUNDLE, "--on-gap", "maybe")
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 2

    def test_started_within_seconds_and_stops_on_sigterm(
        self, bootstrap: str, tmp_path: Path
    ) -> None:
        """An idle worker exits 0 on SIGTERM, well within 10 s."""
        topics = Topics.fresh(bootstrap, 1)
        log = tmp_path / "w.log"
        worker = start_worker(worker_command(bootstrap, topics, BUNDLE), log)
        deadline = time.monotonic() + 60
        while b"worker.partitions_assigned" not in log.read_bytes():
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)  # polling the log for readiness, not guessing a delay
        worker.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert worker.wait(timeout=15) == 0
        assert time.monotonic() - started < 10


class TestRebalance:
    """A second worker joining mid-stream takes partitions over; nothing is lost."""

    def test_two_workers_share_the_stream(self, bootstrap: str, tmp_path: Path) -> None:
        """Every message gets a result; both workers work and exit 0; offsets reach the end."""
        topics = Topics.fresh(bootstrap, PARTITIONS)
        valid = valid_messages(12_000, seed=3)
        half = len(valid) // 2
        produce(bootstrap, topics.input, [(k, v) for k, v, _ in valid[:half]])
        # Batches of one keep the stream flowing while the second worker joins; the second half
        # is produced only once it holds partitions, so both must work whatever the speed.
        command = worker_command(bootstrap, topics, BUNDLE, "--max-batch", "1")
        logs = (tmp_path / "a.log", tmp_path / "b.log")
        first = start_worker(command, logs[0])
        read_all(bootstrap, topics.results, 300, timeout_s=90)
        second = start_worker(command, logs[1])
        try:
            deadline = time.monotonic() + 60
            while b"worker.partitions_assigned" not in logs[1].read_bytes():
                assert time.monotonic() < deadline, "the second worker never got partitions"
                time.sleep(0.1)  # polling its log for the assignment, not guessing a delay
            produce(bootstrap, topics.input, [(k, v) for k, v, _ in valid[half:]])
            # A rebalance may redo a few messages: wait for every id, not for a record count.
            wanted = {m["message_id"] for _, _, m in valid}
            results = read_covering(bootstrap, topics.results, wanted, message_id, 120)
        finally:
            for worker in (second, first):
                worker.send_signal(signal.SIGTERM)
            codes = [first.wait(timeout=20), second.wait(timeout=20)]
        assert codes == [0, 0], logs[0].read_text()[-2000:]
        stopped = [
            json.loads(line)
            for log in logs
            for line in log.read_text().splitlines()
            if '"worker.stopped"' in line
        ]
        assert all(entry["consumed"] > 0 for entry in stopped), stopped
        ids = {json.loads(m.value())["message_id"] for m in results}
        assert ids == wanted
        positions = committed(bootstrap, topics.group, topics.input, PARTITIONS)
        positions = {p: max(o, 0) for p, o in positions.items()}
        assert positions == _end_offsets(bootstrap, topics.input, len(valid))
