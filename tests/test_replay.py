"""Replay: the same answers as `bundle run`, |Q| captured, bad lines kept as dead letters."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FIXTURES, same_array
from tests.kafka_support import any_broker, produce
from tests.test_kafka_worker import BUNDLE, valid_messages
from worker.cli import main
from worker.inference import FIELDS
from worker.kafka.embedded import create_topics


def _expected(messages: list[dict], tmp_path: Path) -> dict[str, np.ndarray]:
    x = np.array([[math.nan if v is None else v for v in m["inputs"]["input_0"]] for m in messages])
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
                str(tmp_path / "expected.npz"),
            ]
        )
        == 0
    )
    with np.load(tmp_path / "expected.npz") as data:
        return {k: data[k] for k in data.files}


def test_replay_from_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Outputs equal bundle run; q_abs feeds a sweep; malformed lines are dead letters."""
    valid = valid_messages(200, seed=21)
    lines = [v for _, v, _ in valid]
    lines.insert(10, b'{"message_id": "bad"}')
    (tmp_path / "recorded.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "run"
    assert (
        main(
            [
                "replay",
                "--bundle",
                str(BUNDLE),
                "--from-file",
                str(tmp_path / "recorded.jsonl"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    expected = _expected([m for _, _, m in valid], tmp_path)
    with np.load(out / "outputs.npz") as data:
        for name in FIELDS:
            assert same_array(data[name], expected[name]), name
        assert list(data["message_id"][:2]) == ["m-21-0", "m-21-1"]
    q_abs = np.load(out / "q_abs.npy")
    assert q_abs.shape == expected["bottom_mask"].shape
    assert (q_abs[np.isfinite(q_abs)] >= 0).all()
    tau = json.loads(
        (FIXTURES / "v061_reference_robotics_seed7" / "bundle" / "metadata.json").read_text()
    )["tau_infer"]
    # The graph's semantic bottoms are exactly the finite |Q| below its tau (float32 compare).
    finite = np.isfinite(q_abs)
    assert np.array_equal(
        expected["semantic_bottom_mask"][finite], (q_abs < np.float32(tau))[finite]
    )
    dead = [json.loads(line) for line in (out / "dead_letters.jsonl").read_text().splitlines()]
    assert [d["code"] for d in dead] == ["invalid_message"] and dead[0]["offset"] == 10
    summary = json.loads((out / "run.json").read_text())
    assert summary["scored"] == 200 and summary["q_abs_available"] is True
    in_range = np.isfinite(q_abs) & (q_abs > 1.05 * tau)
    np.save(tmp_path / "in_range.npy", in_range)
    np.save(tmp_path / "q.npy", np.nan_to_num(q_abs, nan=0.0))
    assert (
        main(
            [
                "tau",
                "sweep",
                "--q-abs",
                str(tmp_path / "q.npy"),
                "--in-range",
                str(tmp_path / "in_range.npy"),
                "--taus",
                "logspace:-1:1:9",
                "--out",
                str(tmp_path / "sweep"),
            ]
        )
        == 0
    )


@pytest.mark.kafka
def test_replay_from_topic(tmp_path: Path) -> None:
    """A topic replays from the beginning to its end, all partitions."""
    valid = valid_messages(120, seed=22)
    with any_broker() as bootstrap:
        topic = f"recorded-{tmp_path.name}"
        create_topics(bootstrap, [topic], partitions=3)
        produce(bootstrap, topic, [(k, v) for k, v, _ in valid])
        out = tmp_path / "run"
        assert (
            main(
                [
                    "replay",
                    "--bundle",
                    str(BUNDLE),
                    "--from-topic",
                    topic,
                    "--bootstrap-servers",
                    bootstrap,
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
    summary = json.loads((out / "run.json").read_text())
    assert summary["messages"] == 120 and summary["scored"] == 120
    with np.load(out / "outputs.npz") as data:
        assert set(data["message_id"]) == {m["message_id"] for _, _, m in valid}
