"""encode_batch, encode_solver_requests and dead-letter headers against the wire models."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np
import pytest

from worker.inference.decode import strict_decode
from worker.inference.result import StrictResult
from worker.wire.deadletter import MAX_REASON_BYTES, dead_letter_headers
from worker.wire.decode import ErrorCode, Sample, SampleSpec, decode_feature
from worker.wire.encode import (
    BundleRef,
    Source,
    encode_batch,
    encode_solver_requests,
    sample_provenance,
)
from worker.wire.limits import Limits
from worker.wire.models import DeadLetterHeaders, Result, SolverRequest

SPECS = (SampleSpec("input_0", (4,), np.dtype(np.float32)),)
BUNDLE = BundleRef("ab" * 32, 2, 2)
TAU_INFER, TAU_TRAIN = 1e-3, 1e-1
NAN = np.nan


def make_samples(n: int) -> list[Sample]:
    """n decoded samples; the second carries a NaN reading and a context."""
    out = []
    for i in range(n):
        reading = [float(i), NAN if i == 1 else 2.0, 0.1, 0.2]
        context = {"i": i, "note": "ℵ"} if i == 1 else None
        value = json.dumps(
            {
                "message_id": f"m{i}",
                "device_id": f"arm-{i}",
                "ts": 1.5 + i,
                "context": context,
                "inputs": {"input_0": reading},
            }
        ).encode()
        decoded = decode_feature(value, SPECS, Limits())
        assert isinstance(decoded, Sample)
        out.append(decoded)
    return out


def sources(n: int) -> list[Source]:
    """Distinct input coordinates per row."""
    return [Source("features", 3, 100 + i) for i in range(n)]


def strict_json(payload: bytes) -> Any:
    """Parse refusing NaN/Infinity tokens: what we publish must be standard JSON."""

    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard JSON token {token}")

    return json.loads(payload, parse_constant=refuse)


def per_element() -> StrictResult:
    """Masks (4, 2): accepted, semantic+accepted, fault+gap, and a mixed entry."""
    p = np.array([[1.0, 2.0], [1.0, 3.0], [NAN, 1.0], [NAN, 1.0]], np.float32)
    q = np.array([[2.0, 4.0], [0.0, 1.0], [1.0, 0.05], [0.0, 1.0]], np.float32)
    return strict_decode(p, q, TAU_INFER, TAU_TRAIN)


def shared() -> StrictResult:
    """Masks (4,): accepted, fault, semantic, gap."""
    p = np.array([[1.0, 2.0], [NAN, 1.0], [1.0, 1.0], [1.0, 3.0]], np.float32)
    q = np.array([2.0, 2.0, 0.0, 0.05], np.float32)
    return strict_decode(p, q, TAU_INFER, TAU_TRAIN)


def results(result: StrictResult, routes: list[str] | None = None) -> list[Result]:
    """encode_batch over make_samples, each payload validated by the Result model."""
    n = result.batch_size
    routes = routes or ["accept"] * n
    payloads = encode_batch(make_samples(n), sources(n), result, routes, BUNDLE, 1234.5)
    assert len(payloads) == n
    for payload in payloads:
        strict_json(payload)
    return [Result.model_validate_json(payload) for payload in payloads]


class TestResults:
    """One Result per sample that validates, echoes the message and carries its row."""

    def test_envelope(self) -> None:
        """Ids, ts, context, source, bundle, route and processed_at are passed through."""
        routes = ["accept", "solver", "reject", "solver"]
        bodies = results(per_element(), routes)
        assert [b.message_id for b in bodies] == ["m0", "m1", "m2", "m3"]
        assert [b.device_id for b in bodies] == ["arm-0", "arm-1", "arm-2", "arm-3"]
        assert [b.ts for b in bodies] == [1.5, 2.5, 3.5, 4.5]
        assert bodies[0].context is None and bodies[1].context == {"i": 1, "note": "ℵ"}
        assert [b.source.offset for b in bodies] == [100, 101, 102, 103]
        assert bodies[0].source.topic == "features" and bodies[0].source.partition == 3
        assert bodies[0].bundle.model_dump() == {
            "id": "ab" * 32,
            "schema_version": 2,
            "strict_inference_schema_version": 2,
        }
        assert [b.route for b in bodies] == routes
        assert {b.processed_at for b in bodies} == {1234.5}

    def test_policy_is_named_when_given(self) -> None:
        """policy is null without a policy, else {name, revision, sha256} on every record."""
        assert all(b.policy is None for b in results(shared()))
        ref = {"name": "robotics", "revision": "r2", "sha256": "cd" * 32, "ignored": "x"}
        samples, rows = make_samples(4), sources(4)
        payloads = encode_batch(samples, rows, shared(), ["solver"] * 4, BUNDLE, 0.0, policy=ref)
        requests = encode_solver_requests(samples, rows, shared(), [1], BUNDLE, policy=ref)
        named = [Result.model_validate_json(p).policy for p in payloads]
        named.append(SolverRequest.model_validate_json(requests[0]).policy)
        for policy in named:
            assert policy is not None
            assert policy.model_dump() == {
                "name": "robotics",
                "revision": "r2",
                "sha256": "cd" * 32,
            }

    def test_per_element_masks_are_the_rows(self) -> None:
        """Each mask field of row i is result row i, as nested booleans and integers."""
        result = per_element()
        for i, body in enumerate(results(result)):
            out = body.outputs
            assert out.bottom_mask == result.bottom_mask[i].tolist()
            assert out.gap_mask == result.gap_mask[i].tolist()
            assert out.fault_mask == result.fault_mask[i].tolist()
            assert out.semantic_bottom_mask == result.semantic_bottom_mask[i].tolist()
            assert out.bottom_provenance == result.bottom_provenance[i].tolist()

    def test_per_element_decoded_null_only_on_bottom_entries(self) -> None:
        """A bottom entry is null; its accepted neighbour keeps its exact float32 value."""
        result = per_element()
        bodies = results(result)
        assert bodies[0].outputs.decoded == [0.5, 0.5]
        assert bodies[1].outputs.decoded == [None, 3.0]
        assert bodies[2].outputs.decoded == [None, float(np.float32(1.0) / np.float32(0.05))]
        assert bodies[3].outputs.decoded == [None, 1.0]
        for i, body in enumerate(bodies):
            got = np.array([NAN if v is None else v for v in body.outputs.decoded], np.float32)
            np.testing.assert_array_equal(got, result.decoded[i])

    def test_per_element_sample_flags(self) -> None:
        """bottom is any entry; gap is any entry but false on a bottom sample."""
        bodies = results(per_element())
        assert [b.bottom for b in bodies] == [False, True, True, True]
        # Row 2 has a gap entry next to a fault entry: the sample is bottom, so not "gap".
        assert per_element().gap_mask[2].any()
        assert [b.gap for b in bodies] == [False, False, False, False]
        assert [b.provenance for b in bodies] == ["none", "semantic", "fault", "mixed"]

    def test_shared_denominator(self) -> None:
        """Masks (B,): scalars per sample, and the whole decoded row is null when bottom."""
        result = shared()
        bodies = results(result)
        assert [b.outputs.decoded for b in bodies] == [
            [0.5, 1.0],
            [None, None],
            [None, None],
            [20.0, 60.0],
        ]
        assert [b.outputs.bottom_mask for b in bodies] == [False, True, True, False]
        assert [b.outputs.bottom_provenance for b in bodies] == [0, 1, 2, 0]
        assert [b.bottom for b in bodies] == [False, True, True, False]
        assert [b.gap for b in bodies] == [False, False, False, True]
        assert [b.provenance for b in bodies] == ["none", "fault", "semantic", "none"]

    def test_no_nan_or_infinity_is_ever_published(self) -> None:
        """Even a decoded NaN or inf outside the bottom mask comes out as null, not a token."""
        result = dataclasses.replace(
            shared(), decoded=np.array([[NAN, np.inf], [1, 1], [1, 1], [-np.inf, 1]], np.float32)
        )
        n = result.batch_size
        for payload in encode_batch(make_samples(n), sources(n), result, ["accept"] * n, BUNDLE, 0):
            assert b"NaN" not in payload and b"Infinity" not in payload
            strict_json(payload)

    def test_unavailable_provenance(self) -> None:
        """Without provenance the codes are null, bottoms say unavailable, others none."""
        result = dataclasses.replace(per_element(), provenance_available=False)
        bodies = results(result)
        assert all(b.outputs.bottom_provenance is None for b in bodies)
        assert [b.provenance for b in bodies] == [
            "none",
            "unavailable",
            "unavailable",
            "unavailable",
        ]
        shared_bodies = results(dataclasses.replace(shared(), provenance_available=False))
        assert [b.outputs.bottom_provenance for b in shared_bodies] == [None] * 4

    def test_bottom_without_either_flag_counts_as_semantic(self) -> None:
        """Contract section 7: a bottom sample with no fault and no semantic flag is semantic."""
        base = shared()
        result = dataclasses.replace(
            base,
            fault_mask=np.zeros(4, bool),
            semantic_bottom_mask=np.zeros(4, bool),
        )
        assert [b.provenance for b in results(result)] == ["none", "semantic", "semantic", "none"]

    def test_flags_outside_bottom_are_ignored(self) -> None:
        """Fault or semantic flags on a non-bottom sample do not make it bottom or labelled."""
        result = dataclasses.replace(shared(), fault_mask=np.ones(4, bool))
        assert [b.provenance for b in results(result)] == ["none", "fault", "mixed", "none"]

    def test_empty_batch(self) -> None:
        """B == 0 produces no records."""
        result = strict_decode(np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32), 1e-3)
        assert encode_batch([], [], result, [], BUNDLE, 0.0) == []
        assert encode_solver_requests([], [], result, [], BUNDLE) == []

    def test_length_mismatch_is_a_programming_error(self) -> None:
        """Sequences that disagree with the result's batch size raise ValueError."""
        result = shared()
        with pytest.raises(ValueError, match="routes"):
            encode_batch(make_samples(4), sources(4), result, ["accept"], BUNDLE, 0.0)
        with pytest.raises(ValueError, match="samples"):
            encode_solver_requests(make_samples(3), sources(4), result, [0], BUNDLE)

    def test_rank_one_decoded(self) -> None:
        """A scalar output per sample is a bare number (or null) per record."""
        result = strict_decode(
            np.array([1.0, 1.0], np.float64), np.array([4.0, 0.0], np.float64), 1e-3
        )
        bodies = results(result)
        assert [b.outputs.decoded for b in bodies] == [0.25, None]
        assert [b.outputs.bottom_mask for b in bodies] == [False, True]


class TestSolverRequests:
    """One SolverRequest per routed row: the original inputs, masks and provenance."""

    def test_routed_rows_only_in_given_order(self) -> None:
        """Indices pick rows; each request validates and echoes its sample."""
        result = per_element()
        samples = make_samples(4)
        payloads = encode_solver_requests(samples, sources(4), result, [3, 1], BUNDLE)
        bodies = [SolverRequest.model_validate_json(p) for p in payloads]
        assert [b.message_id for b in bodies] == ["m3", "m1"]
        assert [b.source.offset for b in bodies] == [103, 101]
        assert [b.provenance for b in bodies] == ["mixed", "semantic"]
        assert bodies[1].context == {"i": 1, "note": "ℵ"} and bodies[1].ts == 2.5
        masks = bodies[0].masks
        assert masks.bottom_mask == result.bottom_mask[3].tolist()
        assert masks.fault_mask == result.fault_mask[3].tolist()
        assert masks.semantic_bottom_mask == result.semantic_bottom_mask[3].tolist()
        assert masks.gap_mask == result.gap_mask[3].tolist()
        assert masks.bottom_provenance == result.bottom_provenance[3].tolist()

    def test_inputs_are_the_original_readings(self) -> None:
        """The raw inputs come back as sent; a NaN reading becomes null (standard JSON)."""
        samples = make_samples(4)
        (payload,) = encode_solver_requests(samples, sources(4), shared(), [1], BUNDLE)
        body = strict_json(payload)
        assert body["inputs"] == {"input_0": [1.0, None, 0.1, 0.2]}
        assert "decoded" not in body and "route" not in body and "outputs" not in body

    def test_unavailable_provenance(self) -> None:
        """Without provenance the codes are null and the label is unavailable."""
        result = dataclasses.replace(shared(), provenance_available=False)
        (payload,) = encode_solver_requests(make_samples(4), sources(4), result, [1], BUNDLE)
        body = SolverRequest.model_validate_json(payload)
        assert body.masks.bottom_provenance is None and body.provenance == "unavailable"


class TestSampleProvenance:
    """The sample-level label from fault, semantic and availability flags."""

    @pytest.mark.parametrize(
        ("fault", "semantic", "available", "label"),
        [
            (False, False, True, "none"),
            (True, False, True, "fault"),
            (False, True, True, "semantic"),
            (True, True, True, "mixed"),
            (False, False, False, "none"),
            (True, False, False, "unavailable"),
            (False, True, False, "unavailable"),
            (True, True, False, "unavailable"),
        ],
    )
    def test_table(self, fault: bool, semantic: bool, available: bool, label: str) -> None:
        """Contract section 7's table, plus unavailable for any bottom without provenance."""
        assert sample_provenance(fault, semantic, available) == label


def header_dict(headers: list[tuple[str, bytes]]) -> dict[str, str]:
    """Header bytes as the strings the DeadLetterHeaders model describes."""
    return {name: value.decode("utf-8") for name, value in headers}


class TestDeadLetterHeaders:
    """Dead-letter headers name the code, the reason and the source coordinates."""

    def test_names_order_and_values(self) -> None:
        """Five headers, UTF-8 bytes, valid against the model."""
        headers = dead_letter_headers(ErrorCode.SHAPE_MISMATCH, "expected 4, found 3", "in", 2, 9)
        assert [name for name, _ in headers] == [
            "scm-error-code",
            "scm-error",
            "scm-source-topic",
            "scm-source-partition",
            "scm-source-offset",
        ]
        assert all(isinstance(value, bytes) for _, value in headers)
        model = DeadLetterHeaders.model_validate(header_dict(headers))
        assert model.scm_error_code is ErrorCode.SHAPE_MISMATCH
        assert (model.scm_source_partition, model.scm_source_offset) == ("2", "9")

    def test_plain_string_code(self) -> None:
        """The loop's own codes (inference_error) pass as plain strings."""
        headers = header_dict(dead_letter_headers("inference_error", "refused", "in", 0, 0))
        assert headers["scm-error-code"] == "inference_error"
        DeadLetterHeaders.model_validate(headers)

    @pytest.mark.parametrize("unit", ["x", "é", "🤖"])
    def test_reason_is_capped_on_a_character_boundary(self, unit: str) -> None:
        """A long reason is cut to at most 1 KiB of valid UTF-8, marked with an ellipsis."""
        (_, reason), *_ = [
            h
            for h in dead_letter_headers("too_large", unit * 5000, "t", 0, 0)
            if h[0] == "scm-error"
        ]
        assert len(reason) <= MAX_REASON_BYTES
        assert reason.decode("utf-8").endswith("...")
        assert len(reason) > MAX_REASON_BYTES - 8

    def test_every_rejection_code_is_a_valid_header(self) -> None:
        """Every ErrorCode value validates as scm-error-code."""
        for code in ErrorCode:
            DeadLetterHeaders.model_validate(header_dict(dead_letter_headers(code, "r", "t", 0, 0)))

    def test_reason_with_lone_surrogate(self) -> None:
        """A reason quoting undecodable text still becomes valid UTF-8."""
        (_, value) = dead_letter_headers("invalid_json", "bad \ud800 text", "t", 0, 0)[1]
        assert value.decode("utf-8") == "bad ? text"


def test_float32_values_round_trip_exactly() -> None:
    """A published float32 value reads back to the same float32 bits."""
    p = np.array([[0.1, 1 / 3], [2.0, 7.0]], np.float32)
    q = np.array([[3.0, 7.0], [3.0, 9.0]], np.float32)
    result = strict_decode(p, q, 1e-3)
    bodies = results(result)
    back = np.array([b.outputs.decoded for b in bodies], np.float32)
    assert back.tobytes() == result.decoded.tobytes()
    assert not math.isnan(float(back[0, 0]))
