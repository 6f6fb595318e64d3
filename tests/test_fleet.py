"""The simulated fleet: deterministic, the mix it promises, and messages the worker reads."""

from __future__ import annotations

from collections import Counter

import numpy as np
import orjson

from worker.fleet.simulate import Fleet, FleetShape
from worker.wire.decode import Rejection, Sample, SampleSpec, decode_feature
from worker.wire.limits import Limits

SPECS = (SampleSpec("input_0", (4,), np.dtype(np.float32)),)


def run(fleet: Fleet, seconds: int, per_second: int = 500) -> list:
    out = []
    for t in range(seconds * 10):
        out += fleet.messages(per_second // 10, 1000.0 + t / 10)
    return out


def test_same_seed_same_messages() -> None:
    shape = FleetShape(devices=5)
    a = run(Fleet(shape, 3, "r", 1000.0), 2)
    b = run(Fleet(shape, 3, "r", 1000.0), 2)
    assert [m.value for m in a] == [m.value for m in b]


def test_the_mix_and_what_the_worker_makes_of_it() -> None:
    """Valid and broken messages decode (broken ones carry a NaN); malformed ones are rejected."""
    shape = FleetShape(devices=10, broken_fraction=0.05, malformed_fraction=0.05)
    messages = run(Fleet(shape, 1, "r", 1000.0), 10)
    kinds = Counter(m.kind for m in messages)
    assert 0.03 < kinds["broken"] / len(messages) < 0.07
    assert 0.03 < kinds["malformed"] / len(messages) < 0.07
    assert len({m.message_id for m in messages}) == len(messages)
    for message in messages:
        decoded = decode_feature(message.value, SPECS, Limits())
        if message.kind == "malformed":
            assert isinstance(decoded, Rejection)
            continue
        assert isinstance(decoded, Sample)
        assert decoded.device_id.encode() == message.key
        row = decoded.inputs["input_0"]
        assert np.isnan(row).any() == (message.kind == "broken")
        assert (np.abs(row[:2][np.isfinite(row[:2])]) <= np.pi).all()


def test_the_degrading_robot_gets_stuck_at_the_folded_pose() -> None:
    fleet = Fleet(FleetShape(devices=8, degrade_after_s=5.0), 2, "r", 0.0)
    stuck = np.full(200, fleet.degrading)
    before = fleet.readings(stuck, 1.0)
    after = fleet.readings(stuck, 6.0)
    distance = np.abs(np.abs(after[:, :2]) - np.pi)
    assert (distance < 0.2).all()
    assert not (np.abs(np.abs(before[:, :2]) - np.pi) < 0.2).all()
    values = [orjson.loads(m.value) for m in fleet.messages(50, 6.0) if m.kind == "valid"]
    assert all(v["ts"] == 6.0 for v in values)
