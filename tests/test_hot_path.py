"""The batched hot path gives the very bytes and arrays of the per-message reference path."""

from __future__ import annotations

import gc
import json
import math
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_wire_encode import BUNDLE, make_samples, per_element, shared, sources
from worker.app import GC_YOUNG_THRESHOLD, settle_gc
from worker.bundle import verify_bundle
from worker.cli.demo_cmd import default_bundle_path
from worker.config import RoutingPolicy
from worker.fleet.simulate import simulate_readings
from worker.inference import BundleRunner
from worker.inference.result import StrictResult
from worker.kafka.batching import next_batch
from worker.monitoring.metrics import Metrics, observe_many
from worker.routing import route_samples
from worker.wire import encode
from worker.wire.decode import Sample, SampleSpec, decode_feature, decode_features
from worker.wire.encode import Source, encode_batch
from worker.wire.limits import Limits

SPECS = (SampleSpec("input_0", (4,), np.dtype(np.float32)),)
POLICY = {"name": "p", "revision": "r1", "sha256": "cd" * 32}


def reference_record(
    sample: Sample, index: int, result: StrictResult, route: str, at: float
) -> bytes:
    """The record as one dict through orjson, field by field as the wire contract lists them."""
    bottom = result.per_sample("bottom_mask")
    fault = result.per_sample("fault_mask") & bottom
    semantic = (result.per_sample("semantic_bottom_mask") | ~fault) & bottom
    decoded = result.decoded[index].astype(object)
    decoded[result.bottom_mask[index]] = None  # per-element masks: same shape as decoded
    label = "none"
    if fault[index] and semantic[index]:
        label = "mixed"
    elif fault[index]:
        label = "fault"
    elif semantic[index]:
        label = "semantic"
    outputs: dict[str, Any] = {"decoded": decoded.tolist()}
    for name in ("bottom_mask", "gap_mask", "fault_mask", "semantic_bottom_mask"):
        outputs[name] = getattr(result, name)[index].tolist()
    outputs["bottom_provenance"] = result.bottom_provenance[index].tolist()
    record = {
        "message_id": sample.message_id,
        "device_id": sample.device_id,
        "ts": sample.ts,
        "context": sample.context,
        "source": {"topic": "features", "partition": 3, "offset": 100 + index},
        "bundle": {"id": BUNDLE.id, "schema_version": 2, "strict_inference_schema_version": 2},
        "policy": POLICY,
        "outputs": outputs,
        "bottom": bool(bottom[index]),
        "gap": bool(result.per_sample("gap_mask")[index] and not bottom[index]),
        "provenance": label,
        "route": route,
        "processed_at": at,
        "direction": None,
    }
    return orjson.dumps(record)


@pytest.fixture(name="splice_always")
def _splice_always(monkeypatch: pytest.MonkeyPatch) -> None:
    # Small test batches would otherwise take the per-record path.
    monkeypatch.setattr(encode, "SPLICE_MIN_ROWS", 1)


@pytest.mark.usefixtures("splice_always")
class TestEncodeSplicing:
    """Results assembled from shared parts equal one orjson.dumps of the whole record."""

    def test_per_element_masks(self) -> None:
        """Every pattern of a per-element batch, with routes that differ between equal masks."""
        result = per_element()
        routes = ["accept", "solver", "reject", "solver"]
        samples = make_samples(result.batch_size)
        got = encode_batch(samples, sources(4), result, routes, BUNDLE, 1234.5, policy=POLICY)
        want = [reference_record(s, i, result, routes[i], 1234.5) for i, s in enumerate(samples)]
        assert got == want

    def test_same_masks_different_routes_do_not_share(self) -> None:
        """Two samples with equal masks but different routes keep their own route."""
        result = shared()
        routes = ["accept", "reject", "solver", "accept"]
        payloads = encode_batch(make_samples(4), sources(4), result, routes, BUNDLE, 1.0)
        assert [json.loads(p)["route"] for p in payloads] == routes

    def test_robotics_batch_equals_per_record_path(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A 512-row robotics batch (bottoms, NaN readings) spliced equals per-record dumps."""
        runner = BundleRunner(verify_bundle(default_bundle_path()))
        readings = simulate_readings(512, np.random.default_rng(3))
        result = runner.run({"input_0": readings})
        routes = route_samples(result, RoutingPolicy())
        samples = (make_samples(4) * 128)[:512]
        where = [Source("features", 0, i) for i in range(512)]
        spliced = encode_batch(samples, where, result, routes, BUNDLE, 9.25, policy=POLICY)
        monkeypatch.setattr(encode, "SPLICE_MIN_ROWS", 10**9)
        plain = encode_batch(samples, where, result, routes, BUNDLE, 9.25, policy=POLICY)
        assert spliced == plain
        assert {json.loads(p)["route"] for p in spliced} >= {"accept", "solver"}


_JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
_CONTEXTS = st.one_of(
    st.none(),
    st.dictionaries(
        st.text(max_size=6),
        st.recursive(
            _JSON_LEAVES,
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
            max_leaves=6,
        ),
        max_size=4,
    ),
)


def _encoded_with(
    min_rows: int,
    samples: list[Sample],
    where: list[Source],
    result: StrictResult,
    routes: list[str],
) -> list[bytes]:
    """encode_batch with SPLICE_MIN_ROWS set for this one call (hypothesis reruns a test's
    body without its fixtures, so a monkeypatch would leak between examples)."""
    kept = encode.SPLICE_MIN_ROWS
    encode.SPLICE_MIN_ROWS = min_rows  # type: ignore[misc]
    try:
        return encode_batch(samples, where, result, routes, BUNDLE, 5.5, policy=POLICY)
    finally:
        encode.SPLICE_MIN_ROWS = kept  # type: ignore[misc]


class TestSplicedColumns:
    """Ids, devices, stamps, contexts and sources joined column by column equal per-record
    serialization, whatever their characters and however many partitions a batch spans."""

    @settings(max_examples=150, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.text(min_size=1, max_size=12),
                st.text(min_size=1, max_size=12),
                st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
                _CONTEXTS,
                st.sampled_from(["features", 'fe"a,t', "ℵ-in"]),
                st.integers(min_value=0, max_value=11),
                st.integers(min_value=0, max_value=2**62),
            ),
            min_size=4,
            max_size=4,
        )
    )
    def test_any_fields_and_sources(self, rows: list[tuple[Any, ...]]) -> None:
        result = per_element()
        routes = ["accept", "solver", "reject", "accept"]
        samples = [
            Sample(message_id, device_id, ts, context, base.inputs, base.raw_inputs)
            for (message_id, device_id, ts, context, *_), base in zip(
                rows, make_samples(4), strict=True
            )
        ]
        where = [Source(topic, partition, offset) for *_, topic, partition, offset in rows]
        spliced, plain = (
            _encoded_with(rows, samples, where, result, routes) for rows in (1, 10**9)
        )
        assert spliced == plain
        # any object with the three attributes, not only NamedTuples read by position
        named = [SimpleNamespace(topic=t, partition=p, offset=o) for t, p, o in where]
        assert _encoded_with(1, samples, cast(Any, named), result, routes) == plain


class TestContextBound:
    """Short messages skip measuring their context: the bound that allows it holds."""

    @settings(max_examples=300, deadline=None)
    @given(_CONTEXTS.filter(lambda c: c is not None), st.sampled_from([json.dumps, orjson.dumps]))
    def test_rewritten_context_is_at_most_five_times_its_text(
        self, context: dict[str, Any], writer: Any
    ) -> None:
        text = writer(context)
        text = text.encode() if isinstance(text, str) else text
        assert len(orjson.dumps(orjson.loads(text))) <= 5 * len(text)

    @pytest.mark.parametrize("token", [b"1e15", b"9e15", b"1E5", b"-1e15", b"18446744073709551616"])
    def test_numbers_that_grow_most(self, token: bytes) -> None:
        text = b'{"a":[' + b",".join([token] * 50) + b"]}"
        assert len(orjson.dumps(orjson.loads(text))) <= 5 * len(text)

    def test_deepest_writable_context_needs_more_text_than_the_bound(self) -> None:
        """254 levels are written; 255 need 510 bytes of brackets, above the 508 allowed."""
        ok = orjson.loads(b'{"a":' + b"[" * 253 + b"]" * 253 + b"}")
        orjson.dumps(ok)
        too_deep = orjson.loads(b'{"a":' + b"[" * 254 + b"]" * 254 + b"}")
        with pytest.raises(orjson.JSONEncodeError):
            orjson.dumps(too_deep)
        assert len(b'{"a":' + b"[" * 254 + b"]" * 254 + b"}") > 508

    def test_long_messages_still_measure_their_context(self) -> None:
        """A context over the limit among ordinary messages is refused as decode_feature does."""
        big = orjson.dumps(
            {
                "message_id": "m",
                "device_id": "d",
                "inputs": {"input_0": [1, 2, 3, 4]},
                "context": {"blob": [1e15] * 300},
            }
        )
        ordinary = b'{"message_id":"m","device_id":"d","inputs":{"input_0":[0.1,2,-0.0,3.5]}}'
        values = [ordinary, big, ordinary]
        got = decode_features(values, SPECS, Limits())
        assert got[1] == decode_feature(big, SPECS, Limits())
        assert not isinstance(got[1], Sample)


class TestDecodeFeatures:
    """The batch decoder answers exactly like decode_feature, message by message."""

    @staticmethod
    def same(a: object, b: object) -> bool:
        if isinstance(a, Sample) and isinstance(b, Sample):
            x, y = a.inputs["input_0"], b.inputs["input_0"]
            return (
                (a.message_id, a.device_id, a.ts, a.context, a.raw_inputs)
                == (b.message_id, b.device_id, b.ts, b.context, b.raw_inputs)
                and x.dtype == y.dtype
                and x.shape == y.shape
                and x.tobytes() == y.tobytes()
            )
        return a == b

    @pytest.mark.parametrize(
        "value",
        [
            b'{"message_id":"a","device_id":"b","inputs":{"input_0":[1e300,-1e300,5,null]}}',
            b'{"message_id":"a","device_id":"b","inputs":{"input_0":[true,1,2,3]}}',
            b'{"message_id":"a","device_id":"b","inputs":{"input_0":["1",1,2,3]}}',
            b'{"message_id":"a","device_id":"b","inputs":{"input_0":[[1],1,2,3]}}',
            b'{"message_id":"a","device_id":"b","inputs":{"input_0":[1,2,3,NaN]},"ts":2}',
            b'{"message_id":"a","device_id":"b","inputs":{"input_0":[1,2,3]}}',
            b'{"message_id":"","device_id":"b","inputs":{"input_0":[1,2,3,4]}}',
            b'{"message_id":5,"device_id":"b","inputs":{"input_0":[1,2,3,4]}}',
            b'{"message_id":"a","device_id":"b","inputs":[1,2,3,4]}',
            b'{"message_id":"a","device_id":"b","inputs":{"input_0":"abcd"}}',
            b'[{"message_id":"a","device_id":"b","inputs":{"input_0":[1,2,3,4]}}]',
            b"null",
            b'{"message_id":"a","device_id":"b","inputs":{"input_0":[1,2,3,4]},"ts":"2024-01-01"}',
            b'{"message_id":"a","device_id":"b","inputs":{"input_0":[1,2,3,4]},"ts":1e400}',
            b'{"message_id":"a","device_id":"b","inputs":{"input_0":[1,2,3,4]},"context":[]}',
            b'{"message_id":"a","device_id":"b","inputs":{"input_0":[1,2,3,4],"x":[1]}}',
            b'{"message_id":"a","device_id":"b","inputs":{"input_0":[1,2,3,18446744073709551615]}}',
            b"not json",
            None,
        ],
    )
    def test_edge_cases_in_a_batch(self, value: bytes | None) -> None:
        """An unusual message among ordinary ones gets decode_feature's answer, in place."""
        ordinary = b'{"message_id":"m","device_id":"d","inputs":{"input_0":[0.1,2,-0.0,3.5]}}'
        values = [ordinary, value, ordinary]
        got = decode_features(values, SPECS, Limits())
        want = [decode_feature(v, SPECS, Limits()) for v in values]
        assert all(self.same(a, b) for a, b in zip(got, want, strict=True))

    @pytest.mark.parametrize(
        "stamps",
        [[1.5, 2.5, 3.5], [1, 2.5, None], [None, None, None], [2**63, -4, 0], [1e308, 1e308, 1.0]],
    )
    def test_ordinary_batches_with_mixed_fields(self, stamps: list[Any]) -> None:
        """Whole batches of ordinary messages (the column-wise path) equal decode_feature."""
        values = [
            orjson.dumps(
                {
                    "message_id": f"m{i}",
                    "device_id": "ℵ" * (i + 1),
                    "inputs": {"input_0": [0.1 * i, i, None, -0.0]},
                    "ts": ts,
                    "context": {"i": i} if i else None,
                }
            )
            for i, ts in enumerate(stamps)
        ]
        got = decode_features(values, SPECS, Limits())
        want = [decode_feature(v, SPECS, Limits()) for v in values]
        assert all(isinstance(g, Sample) for g in got)
        assert all(self.same(a, b) for a, b in zip(got, want, strict=True))

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(
            st.lists(
                st.one_of(
                    st.floats(allow_nan=False, allow_infinity=False),
                    st.integers(min_value=-(2**63), max_value=2**64 - 1),
                    st.none(),
                ),
                min_size=3,
                max_size=5,
            ),
            min_size=1,
            max_size=20,
        )
    )
    def test_any_readings(self, rows: list[list[float | int | None]]) -> None:
        """Random readings (wrong lengths included) decode to the same bits either way."""
        values = [
            json.dumps(
                {"message_id": f"m{i}", "device_id": "d", "inputs": {"input_0": row}, "ts": i}
            ).encode()
            for i, row in enumerate(rows)
        ]
        got = decode_features(values, SPECS, Limits())
        want = [decode_feature(v, SPECS, Limits()) for v in values]
        assert all(self.same(a, b) for a, b in zip(got, want, strict=True))

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.lists(st.floats(), min_size=3, max_size=5),  # NaN and Infinity tokens
                st.sampled_from(["m", "\ud800", "\udfff-x"]),  # lone surrogates: not echoable
                st.one_of(st.none(), st.floats(), st.just("2024-01-01")),
                st.one_of(
                    st.none(),
                    st.just({"a": "\ud800"}),
                    st.just({"blob": [math.nan] * 1200}),  # 6,010 bytes written: too large
                    st.just({"blob": [math.nan] * 700}),  # 3,510 bytes: fits
                    st.just([]),
                ),
            ),
            min_size=1,
            max_size=12,
        )
    )
    def test_documents_read_leniently(
        self, rows: list[tuple[list[float], str, float | str | None, Any]]
    ) -> None:
        """Messages only the lenient reader takes (~1 % of a fleet's) join the batch path
        only when decode_feature accepts them, with its very answer."""
        values = [
            json.dumps(
                {
                    "message_id": f"{ident}{i}",
                    "device_id": "d",
                    "inputs": {"input_0": row},
                    "ts": ts,
                    "context": context,
                }
            ).encode()
            for i, (row, ident, ts, context) in enumerate(rows)
        ]
        got = decode_features(values, SPECS, Limits())
        want = [decode_feature(v, SPECS, Limits()) for v in values]
        assert all(self.same(a, b) for a, b in zip(got, want, strict=True))


class TestDecodedColumn:
    """``decoded`` serialized a batch at a time equals one orjson.dumps per sample."""

    @given(
        st.integers(min_value=1, max_value=12),
        st.sampled_from([(), (1,), (3,), (0,)]),
        st.sampled_from([np.float32, np.float64]),
        st.data(),
    )
    @settings(max_examples=300)
    def test_any_values_and_bottoms(
        self, rows: int, tail: tuple[int, ...], dtype: type, data: st.DataObject
    ) -> None:
        """Specials, subnormals and bottoms included; per-element and per-sample masks."""
        shape = (rows, *tail)
        numbers = st.one_of(
            st.floats(width=32 if dtype is np.float32 else 64),
            st.sampled_from([0.0, -0.0, 1e-45, 5e-324, 3.4e38, float("inf"), float("nan")]),
        )
        flat = data.draw(
            st.lists(numbers, min_size=int(np.prod(shape)), max_size=int(np.prod(shape)))
        )
        decoded = np.array(flat, dtype=np.float64).astype(dtype).reshape(shape)
        per_sample_mask = data.draw(st.booleans())
        mask_shape = (rows,) if per_sample_mask else shape
        bits = data.draw(
            st.lists(
                st.booleans(), min_size=int(np.prod(mask_shape)), max_size=int(np.prod(mask_shape))
            )
        )
        bottom = np.array(bits, dtype=bool).reshape(mask_shape)
        zeros = np.zeros(mask_shape, dtype=bool)
        result = StrictResult(decoded, bottom, zeros, zeros, bottom, bottom.astype(np.int64) * 2)
        want = [orjson.dumps(row) for row in encode._decoded_rows(result)]
        opening, rows_bytes, closing = encode._decoded_bytes(result)
        assert [opening + row + closing for row in rows_bytes] == want


class TestObserveMany:
    """One batched observation per bucket equals one observe() per value."""

    def test_buckets_and_sum(self) -> None:
        """Bucket counts, count and sum agree with the per-value histogram."""
        values = np.array([0.0, 1e-3, 0.002, 0.05, 0.3, 7.0, 100.0, 1e-3])
        batched, single = Metrics(), Metrics()
        observe_many(batched.end_to_end_seconds, values)
        for value in values.tolist():
            single.end_to_end_seconds.observe(value)

        def samples(metrics: Metrics) -> dict[tuple[str, str], float]:
            (family,) = [
                f for f in metrics.registry.collect() if f.name == "scm_end_to_end_seconds"
            ]
            return {
                (s.name, s.labels.get("le", "")): s.value
                for s in family.samples
                if not s.name.endswith("_created")
            }

        a, b = samples(batched), samples(single)
        assert a.keys() == b.keys()
        assert all(math.isclose(a[k], b[k], rel_tol=1e-12) for k in a)


class TestSettleGc:
    """The run command's collector settings: startup objects frozen, young passes rarer."""

    def test_freezes_and_raises_the_young_threshold(self) -> None:
        before = gc.get_threshold()
        try:
            settle_gc()
            assert gc.get_freeze_count() > 0
            assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *before[1:])
            assert gc.isenabled()
        finally:
            gc.unfreeze()
            gc.set_threshold(*before)


class _Queue:
    """``Consumer.consume`` over a local queue: what is queued now, and what arrives during
    a wait; records every (num_messages, timeout) call."""

    def __init__(self, queued: int, arriving: int) -> None:
        self.queued, self.arriving = list(range(queued)), list(range(queued, queued + arriving))
        self.calls: list[tuple[int, float]] = []

    def consume(self, num_messages: int, timeout: float) -> list[int]:
        self.calls.append((num_messages, timeout))
        if timeout > 0:
            self.queued += self.arriving
            self.arriving = []
        taken, self.queued = self.queued[:num_messages], self.queued[num_messages:]
        return taken


class TestNextBatch:
    """Queued messages are taken at once; only an idle consumer waits for a batch to gather."""

    @given(
        queued=st.integers(0, 2000),
        arriving=st.integers(0, 2000),
        max_batch=st.integers(1, 1024),
    )
    def test_waits_only_when_nothing_is_queued(
        self, queued: int, arriving: int, max_batch: int
    ) -> None:
        source = _Queue(queued, arriving)
        batch = next_batch(source.consume, max_batch, 0.005)
        if queued:
            assert source.calls == [(max_batch, 0)]
            assert batch == list(range(min(queued, max_batch)))
        else:
            assert source.calls == [(max_batch, 0), (max_batch, 0.005)]
            assert batch == list(range(min(arriving, max_batch)))

    def test_successive_batches_lose_and_repeat_nothing(self) -> None:
        source = _Queue(1300, 700)
        batches: list[list[int]] = []
        while batch := next_batch(source.consume, 512, 0.005):
            batches.append(batch)
        assert [x for b in batches for x in b] == list(range(2000))
        # the queued 1,300 first, without waiting (the last of them a short batch), then
        # what arrived during the one wait
        assert list(map(len, batches)) == [512, 512, 276, 512, 188]
        assert [timeout for _, timeout in source.calls].count(0.005) == 2


class _Recorder:
    """A producer that keeps each record and its delivery callback; nothing is sent."""

    def __init__(self) -> None:
        self.records: list[tuple[Any, ...]] = []

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int = -1,
        on_delivery: Any = None,
        headers: Any = None,
    ) -> None:
        self.records.append((topic, key, value, headers, on_delivery))


_RUNNER: list[BundleRunner] = []


def _recording_worker(columns: bool, room: int | None = None) -> Any:
    from worker.config import WorkerConfig
    from worker.kafka.clients import RECORD_OVERHEAD_BYTES
    from worker.loop import Published, Worker

    if not _RUNNER:
        _RUNNER.append(BundleRunner(verify_bundle(default_bundle_path())))
    config = WorkerConfig(
        bundle=default_bundle_path(),
        bootstrap_servers="127.0.0.1:1",
        group_id="g",
        input_topic="features",
        results_topic="results",
        solver_topic="solver",
        dlq_topic="dlq",
    )
    worker = Worker(config, _RUNNER[0], cast(Any, None), cast(Any, _Recorder()))
    if room is not None:
        worker.record_limit = RECORD_OVERHEAD_BYTES + room
    worker.clock = lambda: 1.7e9 + 1
    if not columns:  # the per-message path: the columns filed under their messages
        plain = worker._outputs_for

        def per_message(messages: Any, decoded: Any) -> Any:
            outputs = plain(messages, decoded)
            if isinstance(outputs, Published):
                lists: list[list[Any]] = [[] for _ in messages]
                outputs.add_to(lists, list(range(len(messages))), "results", "solver")
                return lists
            return outputs

        worker._outputs_for = per_message
    return worker


class TestPublishedColumns:
    """Producing from columns gives each topic the records the per-message path gives it, and
    the same tracker entries, acknowledgements, commit positions and retries."""

    @settings(max_examples=25, deadline=None)
    @given(
        st.lists(st.integers(0, 2), min_size=1, max_size=90),
        st.sampled_from([None, b"not json", b'{"message_id":"x"}']),
    )
    def test_same_records_entries_and_commits(
        self, partitions: list[int], odd: bytes | None
    ) -> None:
        from confluent_kafka import KafkaError, Message

        from worker.bench.messages import feature_messages

        pairs = feature_messages(len(partitions), ts=1.7e9)
        if odd is not None and len(pairs) > 2:  # a dead letter: the per-message path
            pairs[len(pairs) // 2] = (pairs[len(pairs) // 2][0], odd)
        offsets = [0, 0, 0]
        messages = []
        for p, (key, value) in zip(partitions, pairs, strict=True):
            messages.append(
                Message(
                    topic="features",
                    partition=p,
                    offset=offsets[p],
                    key=key,
                    value=value,
                    timestamp=(1, 1_700_000_000_000 + offsets[p]),
                )
            )
            offsets[p] += 1
        seen = []
        for columns in (True, False):
            worker = _recording_worker(columns)
            worker._handle(messages)
            records = worker.producer.records
            by_topic = {
                t: [r[1:4] for r in records if r[0] == t] for t in ("results", "solver", "dlq")
            }
            entries = [
                (p.partition, p.offset, p.remaining, p.messages)
                for queue in worker.tracker._queues.values()
                for p in queue
            ]
            in_flight = worker.tracker.in_flight
            # fail the first record once, acknowledge every other
            first = records[0]
            failed = Message(topic=first[0], key=first[1], value=first[2])
            first[4](KafkaError(KafkaError._MSG_TIMED_OUT), failed)
            for record in records[1:]:
                record[4](None, None)
            half = (worker.tracker.in_flight, worker.tracker.ready())
            retried = [(o.topic, o.key, o.value, o.headers, o.attempts) for o in worker.retry]
            worker._delivered(worker.retry[0], None, None)  # the retry is acknowledged
            done = (worker.tracker.in_flight, worker.tracker.ready())
            seen.append((by_topic, entries, in_flight, half, retried, done, worker.counters))
        assert seen[0] == seen[1]
        assert seen[0][5][0] == 0

    def test_oversized_results_take_the_per_message_path(self) -> None:
        """Near the record limit, the columns give way to the too_large dead letters."""
        from confluent_kafka import Message

        from worker.bench.messages import feature_messages

        messages = [
            Message(topic="features", partition=0, offset=i, key=k, value=v, timestamp=(1, 1))
            for i, (k, v) in enumerate(feature_messages(8, ts=1.7e9))
        ]
        worker = _recording_worker(columns=True, room=300)
        worker._handle(messages)
        topics = {record[0] for record in worker.producer.records}
        assert topics == {"dlq"}
        assert worker.counters.results == 0


def _reference_routes(result: StrictResult, policy: RoutingPolicy) -> list[str]:
    """route_samples as it was: a string array written rule by rule, then tolist()."""
    bottom = result.per_sample("bottom_mask")
    fault = result.per_sample("fault_mask") & bottom
    semantic = result.per_sample("semantic_bottom_mask") & bottom
    if not result.provenance_available:
        fault, semantic = bottom, np.zeros_like(bottom)
    gap = result.per_sample("gap_mask") & ~bottom
    routes = np.full(bottom.shape, "accept", dtype="<U6")
    routes[gap] = policy.on_gap
    routes[bottom] = policy.on_bottom
    routes[fault] = policy.fault_action
    routes[fault & semantic] = policy.mixed_action
    out: list[str] = routes.tolist()
    return out


class TestRoutes:
    """Routes picked by index equal the rule-by-rule string array, for every policy."""

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans()), min_size=1, max_size=9),
        st.booleans(),
        st.sampled_from(["solver", "reject"]),
        st.sampled_from([None, "solver", "reject"]),
        st.sampled_from([None, "solver", "reject"]),
        st.sampled_from(["accept", "reject", "solver"]),
    )
    def test_any_masks_and_policy(
        self,
        flags: list[tuple[bool, bool, bool]],
        available: bool,
        on_bottom: Any,
        on_fault: Any,
        on_mixed: Any,
        on_gap: Any,
    ) -> None:
        fault = np.array([f for f, _, _ in flags])
        semantic = np.array([s for _, s, _ in flags])
        bottom = fault | semantic
        gap = np.array([g for _, _, g in flags]) & ~bottom
        result = StrictResult(
            np.zeros(len(flags)),
            bottom,
            gap,
            fault,
            semantic,
            fault.astype(np.int64) + 2 * semantic.astype(np.int64),
            provenance_available=available,
        )
        policy = RoutingPolicy(
            on_bottom=on_bottom, on_fault=on_fault, on_mixed=on_mixed, on_gap=on_gap
        )
        assert route_samples(result, policy) == _reference_routes(result, policy)
