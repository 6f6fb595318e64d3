"""The main loop. It only orchestrates: poll, decode, batch, infer, route, produce, mark offsets.

At-least-once: an input offset is stored only after the broker acknowledged every output of
that message (result, solver request or dead letter); librdkafka auto-commits stored offsets,
and we commit synchronously on revoke and on shutdown. Exactly-once (``--exactly-once``) wraps
each micro-batch's outputs and its input offsets in one Kafka transaction instead.
"""

from __future__ import annotations

import functools
import threading
import time
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain, compress, groupby, repeat
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple, cast

import numpy as np
import structlog
from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from worker.calibration.stage import DirectionStage
from worker.config import RoutingPolicy, WorkerConfig
from worker.errors import FatalError
from worker.inference import BundleRunner, StrictResult
from worker.inference.isolate import isolate_refusals
from worker.kafka.batching import next_batch
from worker.kafka.clients import RECORD_OVERHEAD_BYTES, record_limit
from worker.kafka.produce import produce_waiting
from worker.monitoring.observer import Observer
from worker.offsets import OffsetTracker, Partition, Pending
from worker.policy.check import LoadedPolicy
from worker.policy.watch import PolicyWatcher
from worker.routing import SOLVER, route_samples
from worker.wire.deadletter import MAX_VALUE_BYTES, dead_letter_headers, dead_letter_value
from worker.wire.decode import (
    ErrorCode,
    Rejection,
    Sample,
    SampleSpec,
    decode_features,
    stack_inputs,
)
from worker.wire.encode import BundleRef, encode_batch, encode_solver_requests

log = structlog.get_logger("worker.loop")

STATS_EVERY_S = 10.0
Headers = list[tuple[str, str | bytes | None]] | None
Record = tuple[str, bytes | None, Headers]
RETRY_BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0)


class Inbound(NamedTuple):
    """A consumed record's coordinates and bytes, taken off the client's Message once.

    A NamedTuple, not a frozen dataclass: one is built per message (``_inbound``), and tuple
    construction costs a fraction of a frozen dataclass's ``__init__``.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float | None = None

    @property
    def tp(self) -> Partition:
        return (self.topic, self.partition)


_partition_of = itemgetter(0, 1)  # an Inbound's (topic, partition)
_key_of = itemgetter(3)  # an Inbound's key
_inbound_value = itemgetter(4)  # an Inbound's value
_topic_of = itemgetter(0)  # a Record's topic
_value_of = itemgetter(1)  # a Record's value
_headers_of = itemgetter(2)  # a Record's headers
_timestamp_of = itemgetter(5)  # an Inbound's timestamp
_device_of = attrgetter("device_id")  # a Sample's device
_new_inbound = functools.partial(tuple.__new__, Inbound)


def _inbound(messages: Sequence[Message]) -> list[Inbound]:
    """``Inbound`` for a batch of records without errors, in C-level passes per field."""
    topics = list(map(Message.topic, messages))
    partitions = list(map(Message.partition, messages))
    offsets = list(map(Message.offset, messages))
    if None in topics or None in partitions or None in offsets:
        raise FatalError("kafka consumer: expected records with coordinates, found none")
    kinds, millis = zip(*map(Message.timestamp, messages), strict=True) if messages else ((), ())
    # int -> float64 -> / 1000 rounds as Python's millis / 1000 does (exact below 2**53 ms).
    stamps: list[float | None] = (np.array(millis, dtype=np.float64) / 1000).tolist()
    if TIMESTAMP_NOT_AVAILABLE in kinds:
        stamps = [
            None if kind == TIMESTAMP_NOT_AVAILABLE else stamp
            for kind, stamp in zip(kinds, stamps, strict=True)
        ]
    keys = list(map(Message.key, messages))
    values = list(map(Message.value, messages))
    return list(
        map(_new_inbound, zip(topics, partitions, offsets, keys, values, stamps, strict=True))
    )


def _samples_at(decoded: Sequence[Sample | Rejection], rows: list[int]) -> Sequence[Sample]:
    """The Samples at ``rows`` (places of Samples, in order): ``decoded`` itself when that is
    every row, as in the usual batch, rather than a copy taken item by item."""
    if len(rows) == len(decoded):
        return cast(Sequence[Sample], decoded)
    return cast(list[Sample], list(map(decoded.__getitem__, rows)))


class Published(NamedTuple):
    """One model run's outputs as columns: a result per row, requests for ``solver_rows``.

    For a batch whose every message ran in one run this is what the batch produces, with no
    list per message (``Worker._produce_published``); otherwise ``add_to`` files the records
    under their messages.
    """

    results: list[bytes]
    solver_rows: list[int]  # ascending places among the run's rows
    requests: list[bytes]

    def add_to(
        self, outputs: list[list[Record]], rows: list[int], results: str, solver: str
    ) -> None:
        """Append each row's result, then its solver request, to ``outputs[rows[j]]``."""
        for i, payload in zip(rows, self.results, strict=True):
            # The result goes first so that a solver request never precedes its result.
            outputs[i].append((results, payload, None))
        for row, payload in zip(self.solver_rows, self.requests, strict=True):
            outputs[rows[row]].append((solver, payload, None))


@dataclass(slots=True)
class Output:
    """One record to produce, kept until the broker acknowledges it."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    pending: Pending
    attempts: int = 0
    not_before: float = 0.0


@dataclass(frozen=True, slots=True)
class Ran:
    """One successful model run over a slice of a micro-batch."""

    result: StrictResult
    direction: list[dict[str, Any]] | None
    seconds: float


@dataclass
class Counters:
    """Totals since start, logged periodically (never per message)."""

    consumed: int = 0
    results: int = 0
    solver_requests: int = 0
    dead_letters: int = 0
    rejected: int = 0
    batches: int = 0
    produce_retries: int = 0
    by_route: dict[str, int] = field(default_factory=dict)


def sample_specs(runner: BundleRunner) -> tuple[SampleSpec, ...]:
    """Per-sample input shapes (batch axis removed) in the graph's dtypes."""
    return tuple(
        SampleSpec(s.name, tuple(d if isinstance(d, int) else None for d in s.shape[1:]), s.dtype)
        for s in runner.inputs
    )


def policy_ref(loaded: LoadedPolicy) -> dict[str, str]:
    """How results name the policy they were produced under."""
    return {"name": loaded.policy.name, "revision": loaded.policy.revision, "sha256": loaded.digest}


def bundle_ref(runner: BundleRunner) -> BundleRef:
    """How results name the bundle that produced them."""
    bundle = runner.bundle
    return BundleRef(
        bundle.digest, bundle.header.schema_version, bundle.contract.strict_schema_version
    )


class Worker:
    """Consumes feature messages and publishes results, solver requests and dead letters."""

    def __init__(
        self,
        config: WorkerConfig,
        runner: BundleRunner,
        consumer: Consumer,
        producer: Producer,
        *,
        observer: Observer | None = None,
        watcher: PolicyWatcher | None = None,
        policy_ref: dict[str, str] | None = None,
        direction: DirectionStage | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.runner = runner
        self.consumer = consumer
        self.producer = producer
        self.clock = clock
        self.observer = observer
        self.watcher = watcher
        self.policy_ref = policy_ref
        self.direction = direction
        self.routing = config.policy
        self.specs = sample_specs(runner)
        self.bundle = bundle_ref(runner)
        self.limits = config.limits()
        self.record_limit = record_limit(config)
        self.tracker = OffsetTracker()
        self.retry: deque[Output] = deque()
        self.counters = Counters()
        self.paused = False
        self._assignment: set[Partition] = set()
        self._last_stats = time.monotonic()
        self._failure_logged_at = 0.0
        self._failures_unlogged = 0

    # --- lifecycle ------------------------------------------------------------------------

    def run(
        self,
        stop: threading.Event,
        *,
        max_messages: int | None = None,
        idle_timeout_s: float | None = None,
    ) -> Counters:
        """Loop until ``stop`` is set (or a test's stop condition); then drain and commit."""
        self.consumer.subscribe(
            [self.config.input_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        if self.config.exactly_once:
            self.producer.init_transactions(30)
        idle_since = time.monotonic()
        try:
            while not stop.is_set():
                if self._tick():
                    idle_since = time.monotonic()
                elif idle_timeout_s is not None and time.monotonic() - idle_since > idle_timeout_s:
                    break
                if max_messages is not None and self.counters.consumed >= max_messages:
                    break
        finally:
            self.shutdown()
        return self.counters

    def shutdown(self) -> None:
        """Finish what is in flight, flush, store and commit offsets, leave the group."""
        self._drain(timeout_s=8.0)
        self._store_ready()
        if not self.config.exactly_once:
            try:
                self.consumer.commit(asynchronous=False)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError._NO_OFFSET:
                    log.warning("worker.final_commit_failed", reason=str(exc))
        self._log_stats(force=True)
        if self.watcher is not None:
            self.watcher.stop()
        self.consumer.close()
        if self.observer is not None:
            self.observer.close()

    # --- one iteration --------------------------------------------------------------------

    def _tick(self) -> bool:
        self._swap_policy()
        self.producer.poll(0)
        self._resend_failed()
        self._backpressure()
        messages = next_batch(
            self.consumer.consume, self.config.max_batch, self.config.max_wait_ms / 1000
        )
        if messages:
            self._handle(messages)
        acked = self._store_ready()
        self._log_stats()
        if self.observer is not None:
            self.observer.on_loop(
                progressed=bool(messages) or acked,
                in_flight=self.tracker.in_flight + len(self.retry),
                paused=self.paused,
            )
        return bool(messages)

    def _handle(self, messages: Sequence[Message]) -> None:
        if any(map(Message.error, messages)):  # a KafkaError is truthy, None is not
            messages = [m for m in messages if not self._is_error(m)]
        if not messages:
            return
        usable = _inbound(messages)
        self.counters.consumed += len(usable)
        if self.observer is not None:
            self.observer.on_consumed(len(usable))
        decoded = decode_features(list(map(_inbound_value, usable)), self.specs, self.limits)
        outputs = self._outputs_for(usable, decoded)
        if self.config.exactly_once:
            self._produce_transaction(usable, outputs)
        else:
            self._produce_batch(usable, outputs)
        self.counters.batches += 1

    def _outputs_for(
        self, messages: Sequence[Inbound], decoded: Sequence[Sample | Rejection]
    ) -> list[list[Record]] | Published:
        """What each message turns into: ``Published`` columns in the common case (every
        message decoded and inferred, nothing near the record limit), else for each message
        the (topic, value, headers) records it turns into."""
        usable = list(map(isinstance, decoded, repeat(Sample)))
        valid = list(compress(range(len(decoded)), usable))
        refused: list[tuple[int, str]] = []
        chunks: list[tuple[list[int], Published]] = []
        if valid:
            refused, chunks = self._infer(messages, decoded, valid)
        if len(chunks) == 1 and len(valid) == len(decoded):
            published = chunks[0][1]
            if not self._near_limit(messages, chain(published.results, published.requests)):
                return published
        outputs: list[list[Record]] = [[] for _ in messages]
        if len(valid) < len(decoded):
            for i, item in enumerate(decoded):
                if isinstance(item, Rejection):
                    outputs[i].append(self._dead_letter(messages[i], item.code, item.reason))
        for i, reason in refused:
            outputs[i].append(self._dead_letter(messages[i], ErrorCode.INFERENCE_ERROR, reason))
        for rows, published in chunks:
            published.add_to(outputs, rows, self.config.results_topic, self.config.solver_topic)
        if valid:
            self._refuse_oversized(messages, outputs)
        return outputs

    def _near_limit(self, messages: Sequence[Inbound], values: Iterable[bytes | None]) -> bool:
        """Whether any output value with any message's key could exceed the record limit."""
        room = self.record_limit - RECORD_OVERHEAD_BYTES
        longest_key = max(map(len, filter(None, map(_key_of, messages))), default=0)
        longest = max(map(len, filter(None, values)), default=0)
        return longest + longest_key > room

    def _refuse_oversized(self, messages: Sequence[Inbound], outputs: list[list[Record]]) -> None:
        """A result or request over the record limit becomes a too_large dead letter.

        The client (or the broker) would refuse it on every retry and hold its partition back
        for ever; a bundle with large inputs can produce such results within the input limits.
        """
        if not self._near_limit(messages, map(_value_of, chain.from_iterable(outputs))):
            return  # the usual case: nothing comes near the limit
        for i, records in enumerate(outputs):
            room = self.record_limit - RECORD_OVERHEAD_BYTES - len(messages[i].key or b"")
            size = max((len(value or b"") for _, value, _ in records), default=0)
            if size > room and records[0][0] != self.config.dlq_topic:
                self.counters.results -= 1
                self.counters.solver_requests -= len(records) - 1
                outputs[i] = [
                    self._dead_letter(
                        messages[i],
                        ErrorCode.TOO_LARGE,
                        f"expected outputs of at most {room} bytes (message.max.bytes "
                        f"{self.record_limit} less room for key and headers), found {size}",
                    )
                ]

    def _infer(
        self,
        messages: Sequence[Inbound],
        decoded: Sequence[Sample | Rejection],
        valid: list[int],
    ) -> tuple[list[tuple[int, str]], list[tuple[list[int], Published]]]:
        """Refused rows with their reasons, and each successful run's rows and outputs."""
        # valid holds the places of Samples only, so decoded[i] is row i's Sample
        isolated = isolate_refusals(valid, lambda rows: self._run_model(rows, decoded))
        if isolated.refused:
            log.warning(
                "worker.inference_refused",
                refused=len(isolated.refused),
                batch=len(valid),
                runs=isolated.runs,
            )
        chunks = [
            (rows, self._publish(messages, _samples_at(decoded, rows), rows, ran))
            for rows, ran in isolated.ran
        ]
        return isolated.refused, chunks

    def _run_model(self, rows: list[int], decoded: Sequence[Sample | Rejection]) -> Ran:
        samples = _samples_at(decoded, rows)
        started = time.perf_counter()
        feed = stack_inputs(samples, self.specs)
        result = self.runner.run(feed)
        direction = (
            self.direction.records(feed, result, [t.device_id for t in samples])
            if self.direction is not None
            else None
        )
        return Ran(result, direction, time.perf_counter() - started)

    def _publish(
        self,
        messages: Sequence[Inbound],
        typed: Sequence[Sample],
        valid: list[int],
        ran: Ran,
    ) -> Published:
        result, direction, infer_seconds = ran.result, ran.direction, ran.seconds
        routes = route_samples(result, self.routing)
        # An Inbound carries topic, partition, offset: it is the result's source.
        sources = (
            list(messages)
            if len(valid) == len(messages)
            else list(map(messages.__getitem__, valid))
        )
        if self.observer is not None:
            stamps: list[float | None] = list(map(_timestamp_of, sources))
            if not all(stamps):  # `m.timestamp or t.ts`: the record's time, else the message's
                stamps = [m.timestamp or t.ts for m, t in zip(sources, typed, strict=True)]
            devices = list(map(_device_of, typed))
            self.observer.on_batch(result, routes, devices, stamps, infer_seconds)
        now = self.clock()
        results = encode_batch(
            typed,
            sources,
            result,
            routes,
            self.bundle,
            now,
            policy=self.policy_ref,
            direction=direction,
        )
        solver_rows = list(compress(range(len(routes)), map(SOLVER.__eq__, routes)))
        requests = encode_solver_requests(
            typed,
            sources,
            result,
            solver_rows,
            self.bundle,
            policy=self.policy_ref,
            direction=direction,
        )
        by_route = self.counters.by_route
        for route, count in Counter(routes).items():
            by_route[route] = by_route.get(route, 0) + count
        self.counters.results += len(results)
        self.counters.solver_requests += len(requests)
        return Published(results, solver_rows, requests)

    def _dead_letter(self, message: Inbound, code: str, reason: str) -> Record:
        self.counters.dead_letters += 1
        if self.observer is not None:
            self.observer.on_dead_letter(code)
        room = max(0, self.record_limit - RECORD_OVERHEAD_BYTES - len(message.key or b""))
        value, truncated = dead_letter_value(message.value, min(MAX_VALUE_BYTES, room))
        headers: Headers = [
            *dead_letter_headers(code, reason, message.topic, message.partition, message.offset),
            *truncated,
        ]
        return (self.config.dlq_topic, value, headers)

    # --- producing ------------------------------------------------------------------------

    def _produce_batch(
        self, messages: Sequence[Inbound], outputs: list[list[Record]] | Published
    ) -> None:
        """Produce a batch's records; each run of one partition's messages is one tracker entry.

        A run of results and solver requests (no headers) shares one delivery callback; a
        failed record is rebuilt from its delivery report and retried like any other. A run
        holding a dead letter (headers) goes record by record, each with its own callback.
        """
        if isinstance(outputs, Published):
            self._produce_published(messages, outputs)
            return
        start = 0
        for tp, run in groupby(map(_partition_of, messages)):
            end = start + len(list(run))
            counts = list(map(len, outputs[start:end]))
            pending = self.tracker.add(
                tp, messages[end - 1].offset, sum(counts), end - start, self._acked
            )
            records = list(chain.from_iterable(outputs[start:end]))
            keys = list(chain.from_iterable(map(repeat, map(_key_of, messages[start:end]), counts)))
            if any(map(_headers_of, records)):  # dead letters among them: one at a time
                for (topic, value, headers), key in zip(records, keys, strict=True):
                    self._send(Output(topic, key, value, headers, pending))
            else:
                topics, values = list(map(_topic_of, records)), list(map(_value_of, records))
                self._produce_run(topics, values, keys, pending)
            start = end

    def _produce_published(self, messages: Sequence[Inbound], published: Published) -> None:
        """``_produce_batch`` for columns: per partition run, its results, then its requests.

        Each topic receives its records in message order as the per-message path sends them,
        and a solver request still follows its own result.
        """
        keys = list(map(_key_of, messages))
        results, rows, requests = published
        results_topic, solver_topic = self.config.results_topic, self.config.solver_topic
        start = first = 0
        for tp, run in groupby(map(_partition_of, messages)):
            end = start + len(list(run))
            last = bisect_left(rows, end, first)  # the run's requests: rows[first:last]
            pending = self.tracker.add(
                tp, messages[end - 1].offset, end - start + last - first, end - start, self._acked
            )
            self._produce_run(
                [results_topic] * (end - start) + [solver_topic] * (last - first),
                results[start:end] + requests[first:last],
                keys[start:end] + list(map(keys.__getitem__, rows[first:last])),
                pending,
            )
            start, first = end, last

    def _produce_run(
        self,
        topics: Sequence[str],
        values: Sequence[bytes | None],
        keys: Sequence[bytes | None],
        pending: Pending,
    ) -> None:
        """Header-less records with one delivery callback, produced by ``map`` (no Python step
        per record); a record the client refuses goes through ``_send`` and the rest follow."""
        delivered = pending.delivered  # a bound method: one Python frame per delivery report
        each_topic, each_value, each_key = iter(topics), iter(values), iter(keys)
        produced: list[None] = []
        while len(produced) < len(values):
            try:
                # produce(topic, value, key, partition, on_delivery): positional, as map passes
                produced.extend(
                    map(
                        self.producer.produce,
                        each_topic,
                        each_value,
                        each_key,
                        repeat(-1),
                        repeat(delivered),
                    )
                )
            except (BufferError, KafkaException):
                # _send waits for room, or queues a refused record for retry
                i = len(produced)
                self._send(Output(topics[i], keys[i], values[i], None, pending))
                produced.append(None)

    def _acked(self, pending: Pending, err: KafkaError, message: Message | None) -> None:
        """A failed delivery report of a run's record (``Pending.delivered`` serves the rest)."""
        topic = message.topic() if message is not None else None
        if message is None or topic is None:
            raise FatalError(f"kafka producer: expected the failed record back, found {err}")
        self._delivered(Output(topic, message.key(), message.value(), None, pending), err, message)

    def _send(self, output: Output) -> None:
        # A partial (built in C) per record rather than a closure defined per call.
        delivered = functools.partial(self._delivered, output)
        while True:
            try:
                self.producer.produce(
                    output.topic,
                    output.value,
                    output.key,
                    headers=output.headers,
                    on_delivery=delivered,
                )
                return
            except BufferError:
                # The producer queue is full: serve delivery reports until there is room
                # instead of buffering without limit or crashing.
                self.producer.poll(0.05)
            except KafkaException as exc:
                # Refused before sending (a record over message.max.bytes, a topic the client
                # knows is missing): retried like a failed delivery, never a crash loop.
                delivered(exc.args[0], None)
                return

    def _produce_failed(self, output: Output, err: KafkaError) -> None:
        """Count a refused output; log it at most once a second (not once per message)."""
        self.counters.produce_retries += 1
        if self.observer is not None and self.observer.metrics is not None:
            self.observer.metrics.produce_retries.labels(output.topic).inc()
        now = time.monotonic()
        self._failures_unlogged += 1
        if now - self._failure_logged_at >= 1.0:
            log.warning(
                "worker.produce_failed",
                topic=output.topic,
                reason=err.str(),
                code=err.name(),
                attempt=output.attempts,
                failures=self._failures_unlogged,
                source_partition=output.pending.partition[1],
                source_offset=output.pending.offset,
            )
            self._failure_logged_at, self._failures_unlogged = now, 0

    def _delivered(self, output: Output, err: KafkaError | None, _: Message | None) -> None:
        if err is None:
            self.tracker.ack(output.pending)
            return
        output.attempts += 1
        output.not_before = (
            time.monotonic() + RETRY_BACKOFF_S[min(output.attempts, len(RETRY_BACKOFF_S)) - 1]
        )
        self.retry.append(output)
        self._produce_failed(output, err)

    def _resend_failed(self) -> None:
        now = time.monotonic()
        for _ in range(len(self.retry)):
            output = self.retry.popleft()
            if output.not_before > now:
                self.retry.append(output)
            else:
                self._send(output)

    def _produce_transaction(
        self, messages: Sequence[Inbound], outputs: list[list[Record]] | Published
    ) -> None:
        if isinstance(outputs, Published):
            published, outputs = outputs, [[] for _ in messages]
            published.add_to(
                outputs,
                list(range(len(messages))),
                self.config.results_topic,
                self.config.solver_topic,
            )
        self.producer.begin_transaction()
        for message, records in zip(messages, outputs, strict=True):
            for topic, value, headers in records:
                # A batch larger than the producer queue waits for room, as in _send.
                produce_waiting(self.producer, topic, value, message.key, headers=headers)
        positions: dict[Partition, int] = {}
        for message in messages:
            positions[message.tp] = message.offset + 1
        offsets = [TopicPartition(t, p, o) for (t, p), o in positions.items()]
        try:
            self.producer.send_offsets_to_transaction(
                offsets, self.consumer.consumer_group_metadata(), 30
            )
            self.producer.commit_transaction(60)
        except KafkaException as exc:
            error = exc.args[0]
            if not error.txn_requires_abort():
                raise FatalError(f"kafka transaction: expected a commit, found {error}") from exc
            log.warning("worker.transaction_aborted", reason=str(error))
            self.producer.abort_transaction(60)
            first: dict[Partition, int] = {}
            for message in messages:
                first.setdefault(message.tp, message.offset)
            for (topic, partition), offset in first.items():
                self.consumer.seek(TopicPartition(topic, partition, offset))

    # --- policy hot reload -----------------------------------------------------------------

    def _swap_policy(self) -> None:
        """Between batches only: a batch is produced entirely by one policy and one bundle."""
        if self.watcher is None:
            return
        loaded, failure = self.watcher.take()
        if failure is not None:
            self._policy_event("policy-reload-failed", {"reason": failure})
            log.error("policy.reload_failed", reason=failure, policy=str(self.watcher.path))
        if loaded is not None:
            self._activate(loaded)

    def _activate(self, loaded: LoadedPolicy) -> None:
        routing = loaded.policy.routing
        self.runner = loaded.runner
        self.direction = loaded.direction
        self.specs = sample_specs(loaded.runner)
        self.bundle = bundle_ref(loaded.runner)
        self.routing = RoutingPolicy(
            on_bottom=routing.on_semantic,
            on_fault=routing.on_fault,
            on_mixed=routing.on_mixed,
            on_gap=routing.on_gap,
        )
        self.policy_ref = policy_ref(loaded)
        self._policy_event("policy-activated", dict(self.policy_ref))
        log.info("policy.activated", **self.policy_ref, bundle_id=self.bundle.id)

    def _policy_event(self, name: str, fields: dict[str, str]) -> None:
        if self.observer is None:
            return
        self.observer.emit(
            [
                {
                    "event": name,
                    "policy_file": str(self.watcher.path) if self.watcher else None,
                    **fields,
                }
            ]
        )
        if self.observer.metrics is not None:
            outcome = "activated" if name == "policy-activated" else "refused"
            self.observer.metrics.policy_reloads.labels(outcome).inc()

    # --- offsets, backpressure, rebalances -------------------------------------------------

    def _store_ready(self) -> bool:
        """Store offsets of fully acknowledged messages; True when any moved."""
        if self.config.exactly_once:
            return False
        ready = self.tracker.ready()
        offsets = [
            TopicPartition(t, p, o) for (t, p), o in ready.items() if (t, p) in self._assignment
        ]
        if offsets:
            self.consumer.store_offsets(offsets=offsets)
        return bool(ready)

    def _backpressure(self) -> None:
        limit = self.config.max_in_flight
        if not self.paused and self.tracker.in_flight >= limit:
            self._set_paused(True)
        elif self.paused and self.tracker.in_flight <= limit // 2:
            self._set_paused(False)

    def _set_paused(self, paused: bool) -> None:
        partitions = [TopicPartition(t, p) for t, p in self._assignment]
        if partitions:
            (self.consumer.pause if paused else self.consumer.resume)(partitions)
        self.paused = paused
        log.info("worker.backpressure", paused=paused, in_flight=self.tracker.in_flight)

    def _drain(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while (self.tracker.in_flight or self.retry) and time.monotonic() < deadline:
            self._resend_failed()
            self.producer.flush(0.1)
        if self.tracker.in_flight:
            log.warning("worker.drain_incomplete", in_flight=self.tracker.in_flight)

    def _on_assign(self, _: Consumer, partitions: list[TopicPartition]) -> None:
        self._assignment |= {(tp.topic, tp.partition) for tp in partitions}
        self._report_assignment()
        log.info("worker.partitions_assigned", partitions=sorted(self._assignment))
        if self.paused:
            self.consumer.pause(partitions)

    def _on_revoke(self, _: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        self._drain(timeout_s=10.0)
        self._store_ready()
        if not self.config.exactly_once and revoked:
            try:
                self.consumer.commit(asynchronous=False)
            except KafkaException as exc:
                log.info("worker.revoke_commit_skipped", reason=str(exc))
        dropped = self.tracker.forget(revoked)
        self._assignment -= revoked
        self._report_assignment()
        log.info("worker.partitions_revoked", partitions=sorted(revoked), unfinished=dropped)

    def _report_assignment(self) -> None:
        health = self.observer.health if self.observer is not None else None
        if health is not None:
            health.assigned = len(self._assignment)
            health.broker_connected = health.broker_connected or bool(self._assignment)

    # --- diagnostics ----------------------------------------------------------------------

    def _is_error(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return False
        if error.code() != KafkaError._PARTITION_EOF:
            log.warning(
                "worker.consume_error",
                code=error.name(),
                reason=error.str(),
                topic=message.topic(),
                partition=message.partition(),
            )
            if error.fatal():
                raise FatalError(f"kafka consumer: fatal error {error.name()}: {error.str()}")
        return True

    def _log_stats(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_stats >= STATS_EVERY_S:
            self._last_stats = now
            c = self.counters
            log.info(
                "worker.stats",
                consumed=c.consumed,
                results=c.results,
                solver_requests=c.solver_requests,
                dead_letters=c.dead_letters,
                routes=c.by_route,
                batches=c.batches,
                produce_retries=c.produce_retries,
                in_flight=self.tracker.in_flight,
                paused=self.paused,
            )
