"""Hot reload on a running worker: switch mid-stream, refuse a corrupt policy, lose nothing."""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tests.kafka_support import Topics, any_broker, produce, read_all, start_worker, worker_command
from tests.test_kafka_worker import valid_messages
from worker.cli import main

pytestmark = pytest.mark.kafka

ROBOTICS = FIXTURES / "v061_reference_robotics_seed7" / "bundle"


def _create(path: Path, bundle: Path, revision: str, action: str) -> None:
    staging = path.with_name(f"staging-{revision}.json")
    assert (
        main(
            [
                "policy",
                "create",
                "--bundle",
                str(bundle),
                "--out",
                str(staging),
                "--name",
                "robotics",
                "--revision",
                revision,
                "--expected-acceptance-rate",
                "0.95",
                "--on-fault",
                action,
                "--on-semantic",
                action,
            ]
        )
        == 0
    )
    staging.replace(path)  # atomic, as an operator's deploy tool would do it


def _wait_log(log: Path, needle: bytes, count: int = 1, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while log.read_bytes().count(needle) < count:
        assert time.monotonic() < deadline, f"{needle!r} never appeared: {log.read_text()[-2000:]}"
        time.sleep(0.1)  # polling the worker's log for the event, not guessing a delay


def test_switch_mid_stream_and_refuse_corrupt(tmp_path: Path) -> None:
    """Batch 1 under r1, batch 2 under r2, a corrupt file keeps r2; every message once."""
    bundle = tmp_path / "bundle"
    shutil.copytree(ROBOTICS, bundle)
    policy = tmp_path / "policy.json"
    _create(policy, bundle, "r1", "solver")
    with any_broker() as bootstrap:
        topics = Topics.fresh(bootstrap, 2)
        log = tmp_path / "worker.log"
        worker = start_worker(
            worker_command(
                bootstrap, topics, bundle, "--policy", str(policy), "--policy-poll-s", "0.2"
            ),
            log,
        )
        batches = [valid_messages(300, seed=s) for s in (11, 12, 13)]
        try:
            produce(bootstrap, topics.input, [(k, v) for k, v, _ in batches[0]])
            read_all(bootstrap, topics.results, 300)
            _create(policy, bundle, "r2", "reject")
            _wait_log(log, b"policy.activated")
            produce(bootstrap, topics.input, [(k, v) for k, v, _ in batches[1]])
            read_all(bootstrap, topics.results, 600)
            policy.write_text("{ this is not a policy")
            _wait_log(log, b"policy.reload_failed")
            # A valid policy whose bundle is tampered with after it was pinned: refused too.
            tampered = tmp_path / "bundle-r3"
            shutil.copytree(ROBOTICS, tampered)
            pinned = tmp_path / "r3.json"
            _create(pinned, tampered, "r3", "solver")
            model = tampered / "model.onnx"
            model.write_bytes(model.read_bytes()[:-1] + b"\x00")
            pinned.replace(policy)  # only now can the watcher see r3
            _wait_log(log, b"policy.reload_failed", count=2)
            produce(bootstrap, topics.input, [(k, v) for k, v, _ in batches[2]])
            results = read_all(bootstrap, topics.results, 900)
        finally:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=20) == 0, log.read_text()[-2000:]
    bodies = [json.loads(m.value()) for m in results]
    ids = Counter(b["message_id"] for b in bodies)
    assert len(ids) == 900 and max(ids.values()) == 1
    by_batch = [{m["message_id"] for _, _, m in batch} for batch in batches]
    for index, expected_action, revision in (
        (0, "solver", "r1"),
        (1, "reject", "r2"),
        (2, "reject", "r2"),
    ):
        routes = {b["route"] for b in bodies if b["message_id"] in by_batch[index] and b["bottom"]}
        assert routes == {expected_action}, (index, routes)
        revisions = {b["policy"]["revision"] for b in bodies if b["message_id"] in by_batch[index]}
        assert revisions == {revision}
