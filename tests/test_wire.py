"""The wire contract: decoding never raises, encoding matches the models, schemas do not drift."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.inference.decode import strict_decode
from worker.wire.deadletter import dead_letter_headers
from worker.wire.decode import ErrorCode, Rejection, Sample, SampleSpec, decode_feature
from worker.wire.encode import BundleRef, Source, encode_batch, encode_solver_requests
from worker.wire.limits import Limits
from worker.wire.models import Result, SolverRequest
from worker.wire.schemas import SCHEMAS, render

SPECS = (SampleSpec("input_0", (4,), np.dtype(np.float32)),)
LIMITS = Limits(max_message_bytes=4096)


def _message(**overrides: object) -> bytes:
    body: dict[str, object] = {
        "message_id": "m1",
        "device_id": "arm-1",
        "inputs": {"input_0": [1.0, 2.0, 0.1, 0.2]},
    }
    body.update(overrides)
    return json.dumps(body).encode()


class TestDecode:
    """Every feature message becomes a sample or a rejection with the right code."""

    def test_valid(self) -> None:
        """A well-formed message yields arrays in the graph's dtype and shape."""
        sample = decode_feature(
            _message(ts="2026-11-22T10:00:00Z", context={"a": 1}), SPECS, LIMITS
        )
        assert isinstance(sample, Sample)
        assert sample.inputs["input_0"].dtype == np.float32
        assert sample.inputs["input_0"].shape == (4,)
        assert sample.ts == 1795341600.0

    @pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "null"])
    def test_broken_readings_reach_the_model(self, token: str) -> None:
        """null and Python's NaN/Infinity tokens are readings, not malformed messages."""
        raw = b'{"message_id": "m", "device_id": "d", "inputs": {"input_0": [%s, 1, 2, 3]}}'
        sample = decode_feature(raw % token.encode(), SPECS, LIMITS)
        assert isinstance(sample, Sample)
        assert not math.isfinite(sample.inputs["input_0"][0])

    @pytest.mark.parametrize(
        ("raw", "code"),
        [
            (b"{", ErrorCode.INVALID_JSON),
            (b"\xff", ErrorCode.INVALID_JSON),
            (b"[]", ErrorCode.INVALID_MESSAGE),
            (None, ErrorCode.INVALID_MESSAGE),
            (_message(message_id=""), ErrorCode.INVALID_MESSAGE),
            (_message(message_id="x" * 129), ErrorCode.INVALID_MESSAGE),
            (_message(device_id=7), ErrorCode.INVALID_MESSAGE),
            (_message(inputs={"input_0": [1, 2, 3, 4], "x": [1]}), ErrorCode.UNKNOWN_INPUT),
            (_message(inputs={}), ErrorCode.INVALID_MESSAGE),
            (_message(inputs={"input_0": [1, 2, 3]}), ErrorCode.SHAPE_MISMATCH),
            (_message(inputs={"input_0": [[1, 2, 3, 4]]}), ErrorCode.SHAPE_MISMATCH),
            (_message(inputs={"input_0": 5}), ErrorCode.SHAPE_MISMATCH),
            (_message(inputs={"input_0": [True, 1, 2, 3]}), ErrorCode.INVALID_MESSAGE),
            (_message(inputs={"input_0": ["1", 1, 2, 3]}), ErrorCode.INVALID_MESSAGE),
            (_message(ts=[1]), ErrorCode.INVALID_MESSAGE),
            (_message(context="text"), ErrorCode.INVALID_MESSAGE),
            (_message(context={"x": "y" * 5000}), ErrorCode.TOO_LARGE),
            (b'{"pad": "' + b"x" * 5000 + b'"}', ErrorCode.TOO_LARGE),
        ],
    )
    def test_rejections(self, raw: bytes | None, code: ErrorCode) -> None:
        """Each kind of bad input gets its code and a reason naming what was wrong."""
        rejection = decode_feature(raw, SPECS, LIMITS)
        assert isinstance(rejection, Rejection)
        assert rejection.code == code
        assert "expected" in rejection.reason or "deep" in rejection.reason

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=600))
    def test_random_bytes_never_raise(self, raw: bytes) -> None:
        """Arbitrary bytes end as a sample or a rejection, never an exception."""
        assert isinstance(decode_feature(raw, SPECS, LIMITS), Sample | Rejection)

    @settings(max_examples=300, deadline=None)
    @given(
        st.recursive(
            st.none() | st.booleans() | st.floats() | st.integers() | st.text(),
            lambda children: (
                st.lists(children, max_size=5)
                | st.dictionaries(st.text(max_size=8), children, max_size=5)
            ),
            max_leaves=40,
        )
    )
    def test_random_json_never_raises(self, value: object) -> None:
        """Arbitrary JSON in any field ends as a sample or a rejection."""
        for raw in (
            json.dumps(value).encode(),
            _message(inputs={"input_0": value}),
            _message(context=value),
            _message(ts=value),
        ):
            assert isinstance(decode_feature(raw, SPECS, LIMITS), Sample | Rejection)

    def test_deep_nesting_is_refused_not_crashed(self) -> None:
        """A deeply nested document cannot exhaust the stack."""
        raw = b'{"message_id": "m", "device_id": "d", "inputs": {"input_0": ' + b"[" * 3000
        raw += b"]" * 3000 + b"}}"
        assert isinstance(decode_feature(raw, SPECS, Limits()), Rejection)


def _samples(n: int) -> list[Sample]:
    out = []
    for i in range(n):
        decoded = decode_feature(_message(message_id=f"m{i}", context={"i": i}), SPECS, LIMITS)
        assert isinstance(decoded, Sample)
        out.append(decoded)
    return out


BUNDLE = BundleRef("ab" * 32, 2, 2)


class TestEncode:
    """Results and solver requests validate against the models and never carry NaN."""

    def _result(self, shared: bool) -> tuple[list[Sample], object]:
        p = np.array([[1.0, 2.0], [np.nan, 1.0], [1.0, 1.0]], np.float32)
        q = (
            np.array([2.0, 2.0, 0.0], np.float32)
            if shared
            else np.array([[2.0, 0.0], [1.0, 1.0], [0.05, 1.0]], np.float32)
        )
        return _samples(3), strict_decode(p, q, 1e-3, 1e-1)

    @pytest.mark.parametrize("shared", [False, True])
    def test_results(self, shared: bool) -> None:
        """Null exactly on bottom components; sample flags and provenance per contract §7."""
        samples, result = self._result(shared)
        sources = [Source("in", 0, i) for i in range(3)]
        routes = ["accept", "solver", "reject"]
        payloads = encode_batch(samples, sources, result, routes, BUNDLE, 1.5)  # type: ignore[arg-type]
        bodies = [Result.model_validate_json(p) for p in payloads]
        assert [b.route for b in bodies] == routes
        assert [b.message_id for b in bodies] == ["m0", "m1", "m2"]
        for payload in payloads:
            assert b"NaN" not in payload and b"Infinity" not in payload
        if shared:
            assert bodies[0].outputs.decoded == [0.5, 1.0]
            assert bodies[1].outputs.decoded == [None, None] and bodies[1].provenance == "fault"
            assert bodies[2].provenance == "semantic"
        else:
            assert bodies[0].outputs.decoded == [0.5, None]
            assert bodies[0].bottom and bodies[0].provenance == "semantic"
            assert bodies[1].provenance == "fault"
            assert bodies[2].gap is True and bodies[2].bottom is False
            assert bodies[2].provenance == "none"

    def test_unavailable_provenance(self) -> None:
        """Without provenance the codes are null and bottoms say 'unavailable'."""
        import dataclasses

        samples, result = self._result(False)
        result = dataclasses.replace(result, provenance_available=False)  # type: ignore[type-var]
        body = Result.model_validate_json(
            encode_batch(
                samples,
                [Source("in", 0, i) for i in range(3)],
                result,  # type: ignore[arg-type]
                ["solver"] * 3,
                BUNDLE,
                0.0,
            )[1]
        )
        assert body.outputs.bottom_provenance is None
        assert body.provenance == "unavailable"

    def test_solver_requests_echo_the_original_inputs(self) -> None:
        """A solver request carries what the fallback needs: inputs, masks, provenance."""
        samples, result = self._result(False)
        payloads = encode_solver_requests(
            samples, [Source("in", 0, i) for i in range(3)], result, [1], BUNDLE
        )  # type: ignore[arg-type]
        body = SolverRequest.model_validate_json(payloads[0])
        assert body.inputs == {"input_0": [1.0, 2.0, 0.1, 0.2]}
        assert body.masks.fault_mask == [True, False]


def test_dead_letter_headers_cap_the_reason() -> None:
    """The reason header stays small whatever the reason's length."""
    headers = dict(dead_letter_headers("too_large", "x" * 10_000, "t", 1, 2))
    assert len(headers["scm-error"]) <= 1024
    assert headers["scm-source-offset"] == b"2"


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_committed_schemas_match_the_models(name: str) -> None:
    """schemas/*.schema.json are regenerated from the models; drift fails here."""
    from pathlib import Path

    committed = (Path(__file__).parent.parent / "schemas" / name).read_text()
    assert committed == render(SCHEMAS[name]), "run: python -m worker.wire.schemas"
