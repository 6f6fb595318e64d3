"""A policy's direction head: loaded and bound with its bundle, or refused with the field named."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tests.test_calibrate_cli import BUNDLE, HEAD2, HEADS
from tests.test_kafka_direction import store_for
from worker.bundle import verify_bundle
from worker.calibration.calibrators import Isotonic, Temperature, softmax
from worker.calibration.stage import DirectionSettings
from worker.cli import main
from worker.errors import ConfigError
from worker.inference.head import DirectionHeadRunner
from worker.inference.runner import InputSpec
from worker.policy.check import load_policy
from worker.policy.model import read_policy


@pytest.fixture(name="policy")
def _policy(tmp_path: Path) -> Path:
    bundle = tmp_path / "bundle"
    shutil.copytree(BUNDLE, bundle)
    shutil.copy(HEAD2, tmp_path / "head.onnx")
    store_for(tmp_path / "store", verify_bundle(bundle).digest)
    path = tmp_path / "policy.json"
    args = ["policy", "create", "--bundle", str(bundle), "--out", str(path)]
    assert main([*args, "--name", "p", "--revision", "1"]) == 0
    return path


def _edit(path: Path, **head: object) -> None:
    data = json.loads(path.read_text())
    data["direction_head"] = head
    path.write_text(json.dumps(data))


def _load(path: Path, fallback: DirectionSettings | None = None):  # type: ignore[no-untyped-def]
    policy, digest = read_policy(path)
    return load_policy(policy, digest, path, fallback)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_policy_head_and_store_load(policy: Path) -> None:
    """Paths relative to the policy; the store's device calibrator is there."""
    sha = _sha(policy.parent / "head.onnx")
    _edit(policy, model_path="head.onnx", model_sha256=sha, calibrator_store="store")
    loaded = _load(policy)
    assert loaded.direction is not None and loaded.direction.store_id is not None
    assert loaded.direction.policy.labels == ("below", "above")
    assert loaded.direction.policy.store is not None
    assert loaded.direction.policy.store.lookup("arm-1")[1] == "device"


def test_fallback_from_flags(policy: Path) -> None:
    """A policy without a head keeps the flag-given head, bound to the policy's bundle."""
    assert _load(policy).direction is None
    settings_ = DirectionSettings(head=policy.parent / "head.onnx", store=policy.parent / "store")
    loaded = _load(policy, settings_)
    assert loaded.direction is not None and loaded.direction.store_id is not None


@pytest.mark.parametrize(
    ("head", "needle"),
    [
        ({"model_sha256": "0" * 64}, "model_sha256"),
        ({"labels": ["below", "in_range", "above"]}, "labels"),
        ({"input": "nope"}, "input"),
        ({"reject_threshold": 1.5}, "reject_threshold"),
        ({"per_device_reject_thresholds": {"arm-1": -0.1}}, "per_device_reject_thresholds"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_head_refused(policy: Path, head: dict[str, object], needle: str) -> None:
    """Each mistake is refused with the field in the message."""
    base = {"model_path": "head.onnx", "model_sha256": _sha(policy.parent / "head.onnx")}
    _edit(policy, **{**base, **head})
    with pytest.raises(ConfigError, match=needle):
        _load(policy)


def test_three_class_head(policy: Path) -> None:
    """A (batch, 3) head takes below/in_range/above; a binary store for it is refused."""
    shutil.copy(HEADS / "head3.onnx", policy.parent / "head3.onnx")
    sha = _sha(policy.parent / "head3.onnx")
    _edit(policy, model_path="head3.onnx", model_sha256=sha)
    loaded = _load(policy)
    assert loaded.direction is not None
    assert loaded.direction.policy.labels == ("below", "in_range", "above")
    _edit(policy, model_path="head3.onnx", model_sha256=sha, calibrator_store="store")
    with pytest.raises(ConfigError, match="another head"):
        _load(policy)


probabilities = (
    arrays(
        np.float64,
        st.tuples(st.integers(1, 8), st.integers(2, 3)),
        elements=st.floats(0.0, 1.0, allow_nan=False),
    )
    .filter(lambda a: bool((a.sum(axis=1) > 0).all()))
    .map(
        # Calibrators take probabilities: T = 1 returns its input unchanged, so an unnormalised
        # row would (rightly) come back unnormalised.
        lambda a: a / a.sum(axis=1, keepdims=True)
    )
)


class TestCalibratorProperties:
    """Shapes kept, rows sum to 1, temperature keeps the argmax, batch equals single rows."""

    @settings(max_examples=80, deadline=None)
    @given(probabilities, st.floats(0.05, 5.0))
    def test_temperature(self, p: np.ndarray, t: float) -> None:
        out = Temperature(t).apply(p)
        assert out.shape == p.shape
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-12)
        floored = np.maximum(p, 1e-12)
        strict = np.sort(floored, axis=1)[:, -1] > np.sort(floored, axis=1)[:, -2] * 1.0001
        assert np.array_equal(out.argmax(axis=1)[strict], floored.argmax(axis=1)[strict])
        for i in range(p.shape[0]):
            np.testing.assert_allclose(Temperature(t).apply(p[i]), out[i], rtol=1e-15)

    @settings(max_examples=80, deadline=None)
    @given(probabilities)
    def test_isotonic(self, p: np.ndarray) -> None:
        k = p.shape[1]
        knots = tuple(((0.0, 0.3, 1.0), (0.0, 0.2 + 0.1 * c, 0.9)) for c in range(k))
        out = Isotonic(knots).apply(softmax(p))
        assert out.shape == p.shape and (out > 0).all()
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-12)
        for i in range(p.shape[0]):
            np.testing.assert_allclose(Isotonic(knots).apply(softmax(p)[i]), out[i], rtol=1e-15)


def test_run_refuses_policy_with_foreign_store(
    policy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run --policy` whose store was fitted for another bundle: exit 3 before any Kafka I/O."""
    store_for(tmp_path / "foreign", "e" * 64)
    sha = _sha(policy.parent / "head.onnx")
    _edit(policy, model_path="head.onnx", model_sha256=sha, calibrator_store="foreign")
    capsys.readouterr()
    code = main(
        [
            "run",
            "--policy",
            str(policy),
            "--bootstrap-servers",
            "127.0.0.1:1",
            "--group-id",
            "g",
            "--input-topic",
            "in",
            "--results-topic",
            "out",
            "--solver-topic",
            "solver",
            "--dlq-topic",
            "dlq",
        ]
    )
    err = capsys.readouterr().err
    assert code == 3
    assert err.startswith("scm-worker: error: ") and "store.json: bundle_digest" in err
    assert "fitted for another bundle" in err and err.count("\n") == 1


def _head(path: Path, width: int, inputs: int = 1, batch: str | int = "batch") -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    names = [f"x{i}" for i in range(inputs)]
    weights = numpy_helper.from_array(np.ones((4, width), dtype=np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", [names[0], "W"], ["logits"])],
        "h",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [batch, 4]) for n in names],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, width])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


SPEC = (InputSpec("input_0", "input_0", np.dtype(np.float32), ("batch", 4)),)


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda p: _head(p, 4), "output shape"),
        (lambda p: _head(p, 2, inputs=2), "one graph input"),
        (lambda p: _head(p, 2, batch=1), "batch of 2"),
        (lambda p: p.write_bytes(b"not onnx") and p, "ONNX Runtime can load"),
    ],
)
def test_bad_heads_refused(tmp_path: Path, make, needle: str) -> None:  # type: ignore[no-untyped-def]
    """Wrong width, two inputs, a fixed batch of 1, not ONNX: one ConfigError each."""
    path = tmp_path / "head.onnx"
    make(path)
    with pytest.raises(ConfigError, match=needle):
        DirectionHeadRunner(path, SPEC)
    with pytest.raises(ConfigError, match="readable"):
        DirectionHeadRunner(tmp_path / "missing.onnx", SPEC)
