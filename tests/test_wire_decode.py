"""decode_feature and stack_inputs: every message becomes a Sample or a Rejection, never a crash."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.errors import InputMismatchError, PoisonInputError
from worker.wire.decode import (
    ErrorCode,
    Rejection,
    Sample,
    SampleSpec,
    decode_feature,
    stack_inputs,
)
from worker.wire.limits import Limits

F32 = np.dtype(np.float32)
ROBOT = (SampleSpec("input_0", (4,), F32),)
TWO = (
    SampleSpec("pose", (2, 3), F32),
    SampleSpec("free", (None,), np.dtype(np.float64)),
)
LIMITS = Limits()


def body(**overrides: Any) -> dict[str, Any]:
    """A valid robotics feature message as a dict, with fields replaced or added."""
    doc: dict[str, Any] = {
        "message_id": "m-1",
        "device_id": "arm-1",
        "inputs": {"input_0": [1.0, 2.0, 0.1, 0.2]},
    }
    doc.update(overrides)
    return doc


def raw(**overrides: Any) -> bytes:
    """The same message as bytes, written like a Python robot would (NaN tokens allowed)."""
    return json.dumps(body(**overrides)).encode()


def sample(value: bytes, specs: tuple[SampleSpec, ...] = ROBOT, limits: Limits = LIMITS) -> Sample:
    """Decode and insist on a Sample."""
    decoded = decode_feature(value, specs, limits)
    assert isinstance(decoded, Sample), decoded
    return decoded


def rejection(
    value: bytes | None, specs: tuple[SampleSpec, ...] = ROBOT, limits: Limits = LIMITS
) -> Rejection:
    """Decode and insist on a Rejection."""
    decoded = decode_feature(value, specs, limits)
    assert isinstance(decoded, Rejection), decoded
    return decoded


class TestValidMessages:
    """Well-formed messages become samples in the graph's dtype and per-sample shape."""

    def test_robotics_vector(self) -> None:
        """Four floats become a float32 (4,) array; the parsed inputs are kept for echoing."""
        got = sample(raw())
        assert got.message_id == "m-1" and got.device_id == "arm-1"
        assert got.ts is None and got.context is None
        array = got.inputs["input_0"]
        assert array.dtype == F32 and array.shape == (4,)
        assert array.tolist() == np.array([1.0, 2.0, 0.1, 0.2], F32).tolist()
        assert got.raw_inputs == {"input_0": [1.0, 2.0, 0.1, 0.2]}

    def test_integers_are_numbers(self) -> None:
        """JSON integers are readings like any other number."""
        got = sample(raw(inputs={"input_0": [1, -2, 0, 3.5]}))
        assert got.inputs["input_0"].tolist() == [1.0, -2.0, 0.0, 3.5]

    @pytest.mark.parametrize(
        ("ts", "seconds"),
        [
            (1795341600, 1795341600.0),
            (1795341600.25, 1795341600.25),
            (-1.5, -1.5),
            ("2026-11-22T10:00:00Z", 1795341600.0),
            ("2026-11-22T11:00:00+01:00", 1795341600.0),
            ("2026-11-22T10:00:00.5+00:00", 1795341600.5),
            ("2026-11-22T10:00:00", 1795341600.0),
            (None, None),
        ],
    )
    def test_timestamps(self, ts: object, seconds: float | None) -> None:
        """ts is epoch seconds or RFC 3339 (naive read as UTC), normalized to epoch seconds."""
        assert sample(raw(ts=ts)).ts == seconds

    def test_context_passes_through_untouched(self) -> None:
        """The context object comes back equal, nested values and unicode included."""
        context = {"site": "Zürich ⊥", "seq": 12, "tags": ["a", None, {"x": 1.5}], "ok": True}
        assert sample(raw(context=context)).context == context

    @pytest.mark.parametrize("ident", ["x", "🤖" * 128, "a" * 128, " ", "\u0000ctl", "ℵ-7"])
    def test_unicode_ids(self, ident: str) -> None:
        """Any non-empty string of at most 128 characters is an id (characters, not bytes)."""
        got = sample(raw(message_id=ident, device_id=ident))
        assert got.message_id == ident and got.device_id == ident

    def test_unknown_top_level_fields_are_ignored(self) -> None:
        """Producers may add their own fields; only the contract's fields are read."""
        assert sample(raw(firmware="1.2", extra={"deep": [1, 2]})).message_id == "m-1"

    def test_several_inputs_and_free_dimensions(self) -> None:
        """Each input gets its own shape and dtype; a free dimension takes the sent length."""
        inputs = {"pose": [[1, 2, 3], [4, 5, 6]], "free": [0.5, 1.5, 2.5]}
        got = sample(raw(inputs=inputs), TWO)
        assert got.inputs["pose"].shape == (2, 3) and got.inputs["pose"].dtype == F32
        assert got.inputs["free"].shape == (3,) and got.inputs["free"].dtype == np.float64
        assert sample(raw(inputs={**inputs, "free": []}), TWO).inputs["free"].shape == (0,)

    def test_empty_free_dimension_below(self) -> None:
        """An empty array over two free dimensions has shape (0, 0), not an error."""
        spec = (SampleSpec("m", (None, None), F32),)
        assert sample(raw(inputs={"m": []}), spec).inputs["m"].shape == (0, 0)
        got = sample(raw(inputs={"m": [[1, 2], [3, 4], [5, 6]]}), spec).inputs["m"]
        assert got.shape == (3, 2)

    def test_scalar_input(self) -> None:
        """A rank-0 input is one bare number."""
        spec = (SampleSpec("s", (), F32),)
        got = sample(raw(inputs={"s": 2.5}), spec).inputs["s"]
        assert got.shape == () and float(got) == 2.5

    def test_integer_and_boolean_inputs(self) -> None:
        """Integer graphs take integers only; boolean graphs take booleans only."""
        ints = (SampleSpec("i", (3,), np.dtype(np.int64)),)
        assert sample(raw(inputs={"i": [1, -2, 2**62]}), ints).inputs["i"].tolist() == [
            1,
            -2,
            2**62,
        ]
        flags = (SampleSpec("b", (2,), np.dtype(np.bool_)),)
        assert sample(raw(inputs={"b": [True, False]}), flags).inputs["b"].tolist() == [
            True,
            False,
        ]


class TestBrokenReadings:
    """null, NaN and ±Infinity are readings that reach the model, not dead letters."""

    @pytest.mark.parametrize(
        ("token", "check"),
        [
            ("NaN", math.isnan),
            ("null", math.isnan),
            ("Infinity", lambda v: v == math.inf),
            ("-Infinity", lambda v: v == -math.inf),
            ("1e999", lambda v: v == math.inf),
        ],
    )
    def test_tokens(self, token: str, check: Any) -> None:
        """Each token becomes the IEEE value it names, in the graph's dtype."""
        value = b'{"message_id":"m","device_id":"d","inputs":{"input_0":[%s,1,2,3]}}'
        got = sample(value % token.encode())
        assert check(float(got.inputs["input_0"][0]))
        assert got.inputs["input_0"].dtype == F32

    def test_python_json_output(self) -> None:
        """What json.dumps writes for nan and inf decodes back to them."""
        got = sample(raw(inputs={"input_0": [math.nan, math.inf, -math.inf, None]}))
        first, second, third, fourth = got.inputs["input_0"].tolist()
        assert math.isnan(first) and second == math.inf and third == -math.inf
        assert math.isnan(fourth)

    def test_overflow_to_float32_is_inf_without_warning(self) -> None:
        """1e300 does not fit float32: it becomes inf quietly (warnings are errors here)."""
        got = sample(raw(inputs={"input_0": [1e300, -1e300, 3.5e38, 1.0]}))
        assert got.inputs["input_0"].tolist()[:3] == [math.inf, -math.inf, math.inf]

    @pytest.mark.parametrize("nan_elsewhere", [False, True])
    def test_big_integers_read_as_floats_on_both_parsers(self, nan_elsewhere: bool) -> None:
        """Integers beyond 64 bits read as floats, whichever parser reads the message.

        orjson reads them as floats; the fallback (taken for a NaN token) must agree, so that
        a verdict never depends on an unrelated token elsewhere in the message.
        """
        big = "1" + "0" * 30
        tail = ', "context": {"x": NaN}' if nan_elsewhere else ""
        value = (
            '{"message_id":"m","device_id":"d","inputs":{"input_0":['
            + big
            + ",1,2,3]}"
            + tail
            + "}"
        ).encode()
        got = sample(value)
        assert float(got.inputs["input_0"][0]) == float(np.float32(1e30))
        assert got.raw_inputs["input_0"][0] == 1e30

    def test_huge_integer_literal(self) -> None:
        """A 5000-digit integer is a (huge) number, not a parser crash."""
        value = b'{"message_id":"m","device_id":"d","inputs":{"input_0":[%s,NaN,1,2]}}'
        got = sample(value % (b"9" * 5000))
        assert float(got.inputs["input_0"][0]) == math.inf


CASES: list[tuple[str, bytes | None, ErrorCode]] = [
    ("no value", None, ErrorCode.INVALID_MESSAGE),
    ("empty", b"", ErrorCode.INVALID_JSON),
    ("truncated", b'{"message_id":', ErrorCode.INVALID_JSON),
    ("not utf-8", b"\xff\xfe{}", ErrorCode.INVALID_JSON),
    ("python repr", b"{'message_id': 'm'}", ErrorCode.INVALID_JSON),
    ("array", b"[]", ErrorCode.INVALID_MESSAGE),
    ("string", b'"m"', ErrorCode.INVALID_MESSAGE),
    ("number", b"1", ErrorCode.INVALID_MESSAGE),
    ("null", b"null", ErrorCode.INVALID_MESSAGE),
    (
        "no message_id",
        json.dumps({"device_id": "d", "inputs": {}}).encode(),
        ErrorCode.INVALID_MESSAGE,
    ),
    ("empty message_id", raw(message_id=""), ErrorCode.INVALID_MESSAGE),
    ("long message_id", raw(message_id="x" * 129), ErrorCode.INVALID_MESSAGE),
    ("numeric message_id", raw(message_id=7), ErrorCode.INVALID_MESSAGE),
    ("null device_id", raw(device_id=None), ErrorCode.INVALID_MESSAGE),
    ("long device_id", raw(device_id="🤖" * 129), ErrorCode.INVALID_MESSAGE),
    (
        "inputs missing",
        json.dumps({"message_id": "m", "device_id": "d"}).encode(),
        ErrorCode.INVALID_MESSAGE,
    ),
    ("inputs a list", raw(inputs=[[1, 2, 3, 4]]), ErrorCode.INVALID_MESSAGE),
    ("no input names", raw(inputs={}), ErrorCode.INVALID_MESSAGE),
    ("extra input", raw(inputs={"input_0": [1, 2, 3, 4], "x": [1]}), ErrorCode.UNKNOWN_INPUT),
    ("misspelled input", raw(inputs={"input0": [1, 2, 3, 4]}), ErrorCode.UNKNOWN_INPUT),
    ("short", raw(inputs={"input_0": [1, 2, 3]}), ErrorCode.SHAPE_MISMATCH),
    ("long", raw(inputs={"input_0": [1, 2, 3, 4, 5]}), ErrorCode.SHAPE_MISMATCH),
    ("extra axis", raw(inputs={"input_0": [[1, 2, 3, 4]]}), ErrorCode.SHAPE_MISMATCH),
    ("array in a leaf", raw(inputs={"input_0": [[1], 2, 3, 4]}), ErrorCode.SHAPE_MISMATCH),
    ("bare number", raw(inputs={"input_0": 5}), ErrorCode.SHAPE_MISMATCH),
    ("bare null", raw(inputs={"input_0": None}), ErrorCode.SHAPE_MISMATCH),
    ("string array", raw(inputs={"input_0": "1,2,3,4"}), ErrorCode.SHAPE_MISMATCH),
    ("boolean leaf", raw(inputs={"input_0": [True, 1, 2, 3]}), ErrorCode.INVALID_MESSAGE),
    ("string leaf", raw(inputs={"input_0": ["1", 1, 2, 3]}), ErrorCode.INVALID_MESSAGE),
    ("object leaf", raw(inputs={"input_0": [{}, 1, 2, 3]}), ErrorCode.INVALID_MESSAGE),
    ("ts boolean", raw(ts=True), ErrorCode.INVALID_MESSAGE),
    ("ts list", raw(ts=[1]), ErrorCode.INVALID_MESSAGE),
    ("ts words", raw(ts="yesterday"), ErrorCode.INVALID_MESSAGE),
    ("ts NaN", raw(ts=math.nan), ErrorCode.INVALID_MESSAGE),
    ("ts Infinity", raw(ts=math.inf), ErrorCode.INVALID_MESSAGE),
    ("ts long string", raw(ts="2026-11-22T10:00:00Z" + " " * 100), ErrorCode.INVALID_MESSAGE),
    ("context string", raw(context="text"), ErrorCode.INVALID_MESSAGE),
    ("context list", raw(context=[1]), ErrorCode.INVALID_MESSAGE),
    ("context too big", raw(context={"x": "y" * 5000}), ErrorCode.TOO_LARGE),
]


def _deep_context(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {"leaf": 1}
    for _ in range(levels):
        node = {"a": node}
    return node


class TestRejections:
    """Each kind of malformed message gets its code and a reason naming expected and found."""

    @pytest.mark.parametrize(("value", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
    def test_code_and_reason(self, value: bytes | None, code: ErrorCode) -> None:
        """The code is as documented and the reason says what was expected."""
        got = rejection(value)
        assert got.code is code
        assert "expected" in got.reason

    def test_reason_names_the_place(self) -> None:
        """A bad leaf is reported with its input name and index."""
        spec = (SampleSpec("pose", (2, 3), F32),)
        got = rejection(raw(inputs={"pose": [[1, 2, 3], [4, "x", 6]]}), spec)
        assert got.reason.startswith("inputs.pose[1][1]: expected numbers or null, found str")
        ragged = rejection(raw(inputs={"pose": [[1, 2, 3], [4, 6]]}), spec)
        assert ragged.code is ErrorCode.SHAPE_MISMATCH and "found 2" in ragged.reason

    def test_missing_input_among_several(self) -> None:
        """A missing input is invalid_message and the reason names it."""
        got = rejection(raw(inputs={"pose": [[1, 2, 3], [4, 5, 6]], "x": [1]}), TWO)
        assert got.code is ErrorCode.UNKNOWN_INPUT and "'x'" in got.reason
        missing = rejection(raw(inputs={"pose": [[1, 2, 3], [4, 5, 6]]}), TWO)
        assert missing.code is ErrorCode.INVALID_MESSAGE and "missing ['free']" in missing.reason

    def test_size_is_checked_before_parsing(self) -> None:
        """An oversized message is too_large even when it is not JSON at all."""
        got = rejection(b"\xff" * 101, limits=Limits(max_message_bytes=100))
        assert got.code is ErrorCode.TOO_LARGE and "found 101" in got.reason
        assert isinstance(
            decode_feature(raw(), ROBOT, Limits(max_message_bytes=len(raw()))), Sample
        )

    def test_element_limit_counts_across_inputs(self) -> None:
        """max_elements bounds the numbers of the whole message, not of each input."""
        limits = Limits(max_elements=8)
        inputs = {"pose": [[1, 2, 3], [4, 5, 6]], "free": [1, 2]}
        assert isinstance(decode_feature(raw(inputs=inputs), TWO, limits), Sample)
        over = rejection(raw(inputs={**inputs, "free": [1, 2, 3]}), TWO, limits)
        assert over.code is ErrorCode.TOO_LARGE
        free = (SampleSpec("free", (None,), F32),)
        assert rejection(raw(inputs={"free": [0.0] * 9}), free, limits).code is ErrorCode.TOO_LARGE

    def test_element_limit_in_nested_free_dimensions(self) -> None:
        """A large nested array is refused by count before its leaves are copied."""
        spec = (SampleSpec("m", (None, None), F32),)
        value = raw(inputs={"m": [[0.0] * 100] * 1000})
        assert rejection(value, spec, Limits(max_elements=65_536)).code is ErrorCode.TOO_LARGE

    def test_deep_input_nesting_is_too_large(self) -> None:
        """Input nesting beyond max_depth is too_large; shallower extra nesting is a shape error."""
        spec = (SampleSpec("v", (1,), F32),)
        deep: Any = 1.0
        for _ in range(20):
            deep = [deep]
        assert rejection(raw(inputs={"v": deep}), spec).code is ErrorCode.TOO_LARGE
        assert rejection(raw(inputs={"v": [[[1.0]]]}), spec).code is ErrorCode.SHAPE_MISMATCH

    def test_bundle_rank_over_the_limit(self) -> None:
        """A bundle whose inputs nest deeper than max_depth cannot be fed (too_large)."""
        spec = (SampleSpec("v", (1,) * 17, F32),)
        value: Any = 1.0
        for _ in range(17):
            value = [value]
        assert rejection(raw(inputs={"v": value}), spec).code is ErrorCode.TOO_LARGE

    @pytest.mark.parametrize("levels", [300, 1100, 5000])
    def test_deep_documents(self, levels: int) -> None:
        """Nesting deep enough to trouble either parser or the echo is too_large."""
        value = b'{"message_id":"m","device_id":"d","inputs":{"input_0":' + b"[" * levels
        value += b"]" * levels + b"}}"
        assert rejection(value).code in {ErrorCode.TOO_LARGE, ErrorCode.SHAPE_MISMATCH}
        unclosed = b'{"inputs":' + b"[" * levels
        assert rejection(unclosed).code in {ErrorCode.TOO_LARGE, ErrorCode.INVALID_JSON}

    def test_deep_context_cannot_be_echoed(self) -> None:
        """orjson reads 1024 levels but writes 254: a context it cannot echo is too_large."""
        got = rejection(raw(context=_deep_context(300)))
        assert got.code is ErrorCode.TOO_LARGE and got.reason.startswith("context:")

    def test_lone_surrogate_ids(self) -> None:
        """An id that cannot be written back as UTF-8 is invalid_message, not a crash later."""
        value = b'{"message_id":"\\ud800","device_id":"d","inputs":{"input_0":[NaN,1,2,3]}}'
        assert rejection(value).code is ErrorCode.INVALID_MESSAGE
        context = b'{"message_id":"m","device_id":"d","context":{"k":"\\udfff"},'
        context += b'"inputs":{"input_0":[1,2,3,4]}}'
        assert rejection(context).code is ErrorCode.INVALID_MESSAGE

    @pytest.mark.parametrize(
        ("leaf", "code"),
        [
            (1.5, ErrorCode.INVALID_MESSAGE),
            (None, ErrorCode.INVALID_MESSAGE),
            (2**63, ErrorCode.INVALID_MESSAGE),
        ],
    )
    def test_integer_graph_refuses_non_integers(self, leaf: object, code: ErrorCode) -> None:
        """No silent truncation, no NaN and no overflow in an integer input."""
        ints = (SampleSpec("i", (2,), np.dtype(np.int64)),)
        assert rejection(raw(inputs={"i": [leaf, 1]}), ints).code is code


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=10), children, max_size=6)
    ),
    max_leaves=50,
)


def _never_raises(value: bytes | None, specs: tuple[SampleSpec, ...] = ROBOT) -> Sample | Rejection:
    decoded = decode_feature(value, specs, Limits(max_message_bytes=1 << 16, max_elements=4096))
    assert isinstance(decoded, Sample | Rejection)
    if isinstance(decoded, Rejection):
        assert isinstance(decoded.code, ErrorCode) and decoded.reason
    return decoded


class TestNeverRaises:
    """Property tests: whatever arrives, the answer is a Sample or a Rejection."""

    @settings(max_examples=400, deadline=None)
    @given(st.binary(max_size=800))
    def test_random_bytes(self, value: bytes) -> None:
        """Arbitrary bytes."""
        _never_raises(value)

    @settings(max_examples=300, deadline=None)
    @given(json_values)
    def test_random_json_everywhere(self, value: object) -> None:
        """Arbitrary JSON as the document and in each field, for one and two inputs."""
        for doc in (
            json.dumps(value).encode(),
            raw(inputs={"input_0": value}),
            raw(inputs=value),
            raw(context=value),
            raw(ts=value),
            raw(message_id=value),
            raw(inputs={"pose": value, "free": value}),
        ):
            _never_raises(doc)
            _never_raises(doc, TWO)

    @settings(max_examples=200, deadline=None)
    @given(st.binary(min_size=1, max_size=40), st.integers(0, 200))
    def test_corrupted_valid_message(self, junk: bytes, where: int) -> None:
        """A valid message with bytes spliced in anywhere."""
        value = raw(ts="2026-11-22T10:00:00Z", context={"a": [1, 2]})
        where = min(where, len(value))
        _never_raises(value[:where] + junk + value[where:])

    @settings(max_examples=60, deadline=None)
    @given(st.integers(1, 3000), st.sampled_from(["[", '{"a":', '[{"a":']))
    def test_deep_nesting(self, levels: int, opener: str) -> None:
        """Deeply nested inputs, contexts and documents, closed or not."""
        closer = {"[": "]", '{"a":': "}", '[{"a":': "}]"}[opener]
        nested = opener * levels + "1" + closer * levels
        head = '{"message_id":"m","device_id":"d","inputs":{"input_0":'
        for text in (
            nested,
            head + nested + "}}",
            head + '[1,2,3,4]},"context":{"c":' + nested + "}}",
            opener * levels,
        ):
            _never_raises(text.encode())

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.integers(0, 200_000), st.sampled_from([(None,), (None, 4), (4,)]))
    def test_huge_arrays(self, count: int, shape: tuple[int | None, ...]) -> None:
        """Arrays far beyond the element limit are refused without trouble."""
        specs = (SampleSpec("input_0", shape, F32),)
        flat = [0.5] * (count - count % 4)
        value: Any = [flat[i : i + 4] for i in range(0, count, 4)] if len(shape) == 2 else flat
        decoded = _never_raises(raw(inputs={"input_0": value}), specs)
        if len(flat) > 4096:
            assert isinstance(decoded, Rejection) and decoded.code is ErrorCode.TOO_LARGE

    @settings(max_examples=200, deadline=None)
    @given(st.text(max_size=140), st.text(max_size=140))
    def test_unicode_ids(self, message_id: str, device_id: str) -> None:
        """Any unicode text as ids: accepted exactly when 1 to 128 characters long."""
        value = json.dumps(body(message_id=message_id, device_id=device_id)).encode(
            "utf-8", "surrogatepass"
        )
        decoded = _never_raises(value)
        fits = 1 <= len(message_id) <= 128 and 1 <= len(device_id) <= 128
        echoable = not any(0xD800 <= ord(c) <= 0xDFFF for c in message_id + device_id)
        assert isinstance(decoded, Sample) == (fits and echoable)

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(
            st.floats(width=64) | st.integers(-(2**63), 2**63) | st.none(), min_size=4, max_size=4
        )
    )
    def test_any_readings_reach_the_model(self, readings: list[float | int | None]) -> None:
        """Any four numbers (NaN, ±inf, null, huge) decode to their float32 values."""
        got = _never_raises(raw(inputs={"input_0": readings}))
        assert isinstance(got, Sample)
        with np.errstate(over="ignore"):
            want = np.array([math.nan if r is None else float(r) for r in readings], F32)
        np.testing.assert_array_equal(got.inputs["input_0"], want)


class TestStackInputs:
    """Samples stack into (B, *shape) batches in each input's dtype."""

    def test_batch(self) -> None:
        """Rows keep their order and dtype."""
        samples = [sample(raw(inputs={"input_0": [i, i, i, i]})) for i in range(3)]
        stacked = stack_inputs(samples, ROBOT)
        assert stacked["input_0"].shape == (3, 4) and stacked["input_0"].dtype == F32
        assert stacked["input_0"][:, 0].tolist() == [0.0, 1.0, 2.0]

    def test_empty_batch(self) -> None:
        """B == 0 gives empty arrays of the right rank and dtype (free dimensions 0)."""
        stacked = stack_inputs([], TWO)
        assert stacked["pose"].shape == (0, 2, 3) and stacked["pose"].dtype == F32
        assert stacked["free"].shape == (0, 0) and stacked["free"].dtype == np.float64

    def test_ragged_free_dimension(self) -> None:
        """Samples that disagree on a free dimension raise a PoisonInputError, not ValueError."""
        pose = [[1, 2, 3], [4, 5, 6]]
        samples = [sample(raw(inputs={"pose": pose, "free": [1.0] * n}), TWO) for n in (1, 2)]
        with pytest.raises(InputMismatchError, match="free") as caught:
            stack_inputs(samples, TWO)
        assert isinstance(caught.value, PoisonInputError)
        assert stack_inputs(samples[:1], TWO)["free"].shape == (1, 1)
