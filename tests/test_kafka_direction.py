"""A worker with a direction head and a calibrator store, as an independent consumer sees it."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.kafka_support import (
    Topics,
    any_broker,
    committed,
    produce,
    read_all,
    start_worker,
    worker_command,
)
from tests.test_calibrate_cli import BUNDLE, HEAD2
from tests.test_kafka_policy import _wait_log
from tests.test_kafka_worker import valid_messages
from worker.bundle import verify_bundle
from worker.calibration.calibrators import Temperature, softmax
from worker.calibration.store import write_store
from worker.cli import main
from worker.inference.head import DirectionHeadRunner
from worker.inference.runner import InputSpec

pytestmark = pytest.mark.kafka

GLOBAL_T, DEVICE_T = 2.0, 0.5
SPEC = (InputSpec("input_0", "input_0", np.dtype(np.float32), ("batch", 4)),)


@pytest.fixture(scope="module", name="bootstrap")
def _bootstrap() -> Iterator[str]:
    with any_broker() as servers:
        yield servers


def store_for(path: Path, bundle_digest: str) -> Path:
    """Global T = 2, and arm-1's own T = 0.5."""
    manifest = {
        "bundle_digest": bundle_digest,
        "head_sha256": DirectionHeadRunner(HEAD2, SPEC).sha256,
        "classes": ["below", "above"],
        "method": "temperature",
        "created_at": "2026-11-23T00:00:00+00:00",
    }
    return write_store(path, manifest, Temperature(GLOBAL_T), {"arm-1": Temperature(DEVICE_T)})


def expected_direction(message: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """Independent arithmetic: logits +-60 dx, the device's temperature, threshold 0."""
    readings = message["inputs"]["input_0"]
    scope = "device" if message["device_id"] == "arm-1" else "global"
    if any(v is None or not np.isfinite(v) for v in readings):
        return {"calibrator": scope, "confidence": None, "class_id": 1}
    dx = np.float32(readings[2])
    p = Temperature(DEVICE_T if scope == "device" else GLOBAL_T).apply(
        softmax(np.array([-60 * dx, 60 * dx], dtype=np.float32))
    )
    semantic = body["bottom"] and body["provenance"] in ("semantic", "mixed")
    head_class = 2 if p[1] > p[0] else 0
    return {
        "calibrator": scope,
        "confidence": float(p.max()),
        "class_id": head_class if semantic else 1,
    }


def test_device_and_global_calibrators(bootstrap: str, tmp_path: Path) -> None:
    """arm-1 is scored by its own calibrator, every other robot by the global one."""
    store = store_for(tmp_path / "store", verify_bundle(BUNDLE).digest)
    topics = Topics.fresh(bootstrap, 2)
    log = tmp_path / "worker.log"
    command = worker_command(
        bootstrap,
        topics,
        BUNDLE,
        "--direction-head",
        str(HEAD2),
        "--calibrator-store",
        str(store),
        "--on-bottom",
        "solver",
    )
    worker = start_worker(command, log)
    messages = valid_messages(400, seed=31)
    try:
        produce(bootstrap, topics.input, [(k, v) for k, v, _ in messages])
        results = read_all(bootstrap, topics.results, len(messages))
        solver = read_all(bootstrap, topics.solver, 1, timeout_s=20)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, log.read_text()[-2000:]
    by_id = {m["message_id"]: m for _, _, m in messages}
    bodies = [json.loads(r.value()) for r in results]
    assert Counter(b["message_id"] for b in bodies) == Counter(list(by_id))
    scopes = Counter()
    for body in bodies:
        direction = body["direction"]
        want = expected_direction(by_id[body["message_id"]], body)
        assert direction["calibrator"] == want["calibrator"], body["device_id"]
        assert direction["class_id"] == want["class_id"], body
        assert direction["label"] == ("below", "in_range", "above")[want["class_id"]]
        if want["confidence"] is None:
            assert direction["confidence"] is None
        else:
            assert direction["confidence"] == pytest.approx(want["confidence"], rel=1e-5)
        scopes[(body["device_id"] == "arm-1", direction["calibrator"])] += 1
    assert set(scopes) == {(True, "device"), (False, "global")}
    assert sum(1 for b in bodies if b["bottom"] and b["direction"]["class_id"] != 1) > 0
    result_direction = {b["message_id"]: b["direction"] for b in bodies}
    requests = [json.loads(r.value()) for r in solver]
    assert requests and all(r["direction"] == result_direction[r["message_id"]] for r in requests)
    offsets = committed(bootstrap, topics.group, topics.input, 2)
    assert sum(offsets.values()) == len(messages)


def test_store_of_another_bundle_refused_at_start(bootstrap: str, tmp_path: Path) -> None:
    """The worker does not start: exit 3 and one line naming the mismatch."""
    store = store_for(tmp_path / "store", "0" * 64)
    topics = Topics.fresh(bootstrap, 1)
    command = worker_command(
        bootstrap,
        topics,
        BUNDLE,
        "--direction-head",
        str(HEAD2),
        "--calibrator-store",
        str(store),
    )
    done = subprocess.run(command, capture_output=True, timeout=120, check=False)
    err = done.stderr.decode()
    assert done.returncode == 3, err
    assert "fitted for another bundle" in err and err.count("\n") == 1, err


def _policy(path: Path, bundle: Path, revision: str, store: Path) -> None:
    staging = path.with_name(f"staging-{revision}.json")
    code = main(
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
            "--direction-head",
            str(HEAD2),
            "--calibrator-store",
            str(store),
        ]
    )
    assert code == 0
    staging.replace(path)


def test_store_of_another_bundle_refused_at_reload(bootstrap: str, tmp_path: Path) -> None:
    """r2 names a store fitted for another bundle: refused, r1 and its calibrators stay."""
    bundle = tmp_path / "bundle"
    shutil.copytree(BUNDLE, bundle)
    good = store_for(tmp_path / "good", verify_bundle(bundle).digest)
    foreign = store_for(tmp_path / "foreign", "f" * 64)
    policy = tmp_path / "policy.json"
    _policy(policy, bundle, "r1", good)
    assert main(["policy", "validate", str(policy)]) == 0
    topics = Topics.fresh(bootstrap, 1)
    log = tmp_path / "worker.log"
    worker = start_worker(
        worker_command(
            bootstrap, topics, bundle, "--policy", str(policy), "--policy-poll-s", "0.2"
        ),
        log,
    )
    first, second = valid_messages(100, seed=41), valid_messages(100, seed=42)
    try:
        produce(bootstrap, topics.input, [(k, v) for k, v, _ in first])
        read_all(bootstrap, topics.results, 100)
        _policy(policy, bundle, "r2", foreign)
        _wait_log(log, b"policy.reload_failed")
        produce(bootstrap, topics.input, [(k, v) for k, v, _ in second])
        results = read_all(bootstrap, topics.results, 200)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, log.read_text()[-2000:]
    assert b"fitted for another bundle" in log.read_bytes()
    bodies = [json.loads(r.value()) for r in results]
    assert len({b["message_id"] for b in bodies}) == 200 == len(bodies)
    assert {b["policy"]["revision"] for b in bodies} == {"r1"}
    for body in bodies:
        expected = "device" if body["device_id"] == "arm-1" else "global"
        assert body["direction"]["calibrator"] == expected
