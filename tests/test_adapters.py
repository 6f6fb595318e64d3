"""Adapters fail closed: whatever a graph claims, a bottom is never published as a number."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from tests.bundles import LIAR_INPUTS, SIX_OUTPUTS, identity_model, write_bundle
from tests.conftest import FIXTURES, same_array
from worker.bundle import verify_bundle
from worker.inference import FIELDS, BundleRunner


@functools.cache
def _liar_runner() -> BundleRunner:
    """One six-output bundle whose 'model' returns whatever the test feeds it."""
    directory = Path(tempfile.mkdtemp(prefix="liar-"))
    write_bundle(directory, identity_model(LIAR_INPUTS, SIX_OUTPUTS))
    return BundleRunner(verify_bundle(directory))


@pytest.fixture(name="liar")
def _liar() -> BundleRunner:
    return _liar_runner()


def _claims(
    decoded: float, bottom: bool, gap: bool, fault: bool, semantic: bool, code: int
) -> dict[str, np.ndarray]:
    return {
        "d": np.array([[decoded]], np.float32),
        "b": np.array([[bottom]]),
        "g": np.array([[gap]]),
        "f": np.array([[fault]]),
        "s": np.array([[semantic]]),
        "c": np.array([[code]], np.int64),
    }


class TestPassthroughInvariants:
    """A six-output graph whose masks contradict each other is corrected towards bottom."""

    def test_consistent_outputs_pass_untouched(self, liar: BundleRunner) -> None:
        """Nothing changes when the graph keeps its promises."""
        result = liar.run(_claims(1.5, False, True, False, False, 0))
        assert result.violations == 0
        assert result.decoded[0, 0] == np.float32(1.5) and result.gap_mask[0, 0]

    @pytest.mark.parametrize(
        "claim",
        [
            (np.nan, False, False, False, False, 0),  # NaN published as accepted
            (np.inf, False, False, False, False, 0),  # infinity published as accepted
            (1.0, True, False, False, False, 1),  # bottom with neither fault nor semantic
            (1.0, False, False, True, False, 1),  # fault that is not bottom
            (1.0, True, False, True, False, 0),  # bottom with code 0
            (1.0, True, True, False, True, 2),  # gap on a bottom entry
            (1.0, True, False, False, True, 7),  # a code outside 0..3
            (0.0, True, False, True, False, 1),  # a number where the graph says bottom
        ],
    )
    def test_violation_becomes_fault_bottom(
        self, liar: BundleRunner, claim: tuple[float, bool, bool, bool, bool, int]
    ) -> None:
        """Any broken invariant: fault bottom, decoded NaN, gap off, code consistent."""
        result = liar.run(_claims(*claim))
        assert result.violations == 1
        assert result.bottom_mask[0, 0] and result.fault_mask[0, 0]
        assert not result.gap_mask[0, 0]
        assert np.isnan(result.decoded[0, 0])
        assert result.bottom_provenance[0, 0] in (1, 3)

    @settings(max_examples=150, deadline=None)
    @given(
        st.floats(width=32),
        st.booleans(),
        st.booleans(),
        st.booleans(),
        st.booleans(),
        st.integers(-2, 5),
    )
    def test_never_a_number_on_bottom(
        self, decoded: float, bottom: bool, gap: bool, fault: bool, semantic: bool, code: int
    ) -> None:
        """Whatever the graph claims, published results satisfy every invariant."""
        r = _liar_runner().run(_claims(decoded, bottom, gap, fault, semantic, code))
        assert np.array_equal(r.bottom_mask, r.fault_mask | r.semantic_bottom_mask)
        assert np.array_equal(r.bottom_mask, r.bottom_provenance != 0)
        assert not (r.gap_mask & r.bottom_mask).any()
        assert np.isnan(r.decoded[r.bottom_mask]).all()
        assert np.isfinite(r.decoded[~r.bottom_mask]).all()


def _opaque_v1_model() -> onnx.ModelProto:
    """A 3-output graph with no zeroproofml decode tail: decoded = x, bottom = isnan, gap = x<0."""
    nodes = [
        helper.make_node("Identity", ["x"], ["decoded"]),
        helper.make_node("IsNaN", ["x"], ["bottom_mask"]),
        helper.make_node(
            "Constant", [], ["zero"], value=helper.make_tensor("z", TensorProto.FLOAT, [], [0.0])
        ),
        helper.make_node("Less", ["x", "zero"], ["gap_mask"]),
    ]
    graph = helper.make_graph(
        nodes,
        "opaque",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1])],
        [
            helper.make_tensor_value_info("decoded", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("bottom_mask", TensorProto.BOOL, ["batch", 1]),
            helper.make_tensor_value_info("gap_mask", TensorProto.BOOL, ["batch", 1]),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)


class TestUnrecognisedLegacyGraph:
    """A 3-output graph we cannot read: non-finite is fault, provenance unavailable."""

    def test_fail_closed(self, tmp_path: Path) -> None:
        """inf becomes a fault bottom; a gap entry that is bottom is not gap; flag says so."""
        write_bundle(tmp_path, _opaque_v1_model(), strict=1)
        runner = BundleRunner(verify_bundle(tmp_path))
        assert runner.adapter.name == "v1-fail-closed"
        x = np.array([[1.0], [np.inf], [np.nan], [-2.0], [-np.inf]], np.float32)
        result = runner.run({"x": x})
        assert not result.provenance_available
        assert result.bottom_mask[:, 0].tolist() == [False, True, True, False, True]
        assert np.array_equal(result.fault_mask, result.bottom_mask)
        assert result.gap_mask[:, 0].tolist() == [False, False, False, True, False]
        assert np.isnan(result.decoded[result.bottom_mask]).all()
        assert set(np.unique(result.bottom_provenance)) <= {0, 1}


class TestLegacyExternalData:
    """Weights in model.onnx.data load from the bundle, not from the working directory."""

    def _external_copy(self, tmp_path: Path, schema: int) -> Path:
        model = onnx.load(FIXTURES / "v051_legacy_v1_scalar" / "bundle" / "model.onnx")
        onnx.external_data_helper.convert_model_to_external_data(
            model, all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=0
        )
        staging = tmp_path / "staging"
        staging.mkdir()
        onnx.save(model, staging / "model.onnx")
        bundle = tmp_path / "bundle"
        write_bundle(bundle, (staging / "model.onnx").read_bytes(), schema=schema, strict=1)
        (bundle / "model.onnx.data").write_bytes((staging / "model.onnx.data").read_bytes())
        return bundle

    @pytest.mark.parametrize("schema", [1, 2])
    def test_loads_and_matches_reference(
        self, tmp_path: Path, schema: int, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Verified or not, the bundle runs from any working directory and matches np061."""
        bundle = self._external_copy(tmp_path, schema)
        monkeypatch.chdir(tmp_path.parent)
        runner = BundleRunner(verify_bundle(bundle, allow_unverified_legacy=True))
        assert [f.name for f in runner.bundle.external_files] == ["model.onnx.data"]
        assert any("not covered" in w for w in runner.warnings)
        with np.load(FIXTURES / "v051_legacy_v1_scalar" / "cases.npz") as data:
            result = runner.run({"input_0": data["input__input_0"]})
            for name in FIELDS:
                assert same_array(getattr(result, name), data[f"np061__{name}"]), name

    def test_external_location_cannot_escape(self, tmp_path: Path) -> None:
        """An external-data location with '..' is refused, never read."""
        bundle = self._external_copy(tmp_path, 2)
        model = onnx.load(bundle / "model.onnx", load_external_data=False)
        for tensor in model.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = "../staging/model.onnx.data"
        write_bundle(bundle, model, strict=1)
        with pytest.raises(Exception, match="inside the bundle"):
            verify_bundle(bundle)


def test_fields_order_is_the_contract() -> None:
    """The six fields keep the contract's order everywhere."""
    assert list(FIELDS) == SIX_OUTPUTS
