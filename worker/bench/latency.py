"""Latency under a paced load: feature message timestamp to the result readable downstream.

A producer thread sends at a fixed rate (a share of the measured capacity), stamping each
message's ``ts`` as it goes; the main thread reads results and takes ``now - ts``. A result
a consumer can read has been acknowledged by the broker, so these figures are an upper
bound on "timestamp to acknowledgement" (they include the reader's fetch wait, <= 10 ms;
the reader blocks in poll() for the first record, never in consume(), which would wait out
its timeout).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from confluent_kafka import Consumer, Message, Producer

from worker.bench.cpu import CpuMeter
from worker.bench.kafka_io import (
    Arrivals,
    BenchTopics,
    count_until,
    reader,
)
from worker.bench.messages import around_ts, result_ts, stamped, ts_field
from worker.bench.progress import Progress
from worker.bench.worker_proc import running_worker, worker_command
from worker.errors import FatalError
from worker.kafka.embedded import create_topics

TICK_S = 0.001
WARMUP_MESSAGES = 2_000
SETTLE_TIMEOUT_S = 60.0
GROUP_TIMEOUT_S = 90.0  # every --processes child in the group (a join is ~3 s on Tansu)
READ_SLICE_S = 0.25
UNBOUNDED = 2**62
# librdkafka's default, as a fleet's producers would run. The embedded broker's cost is per
# request: at 25,000 msg/s a 1 ms linger (five times the requests) took it from 0.22 to 0.60
# of a core for one hop, enough to saturate two cores with the worker and turn the worker's
# p99 at 50 % of capacity from ~100 ms into ~1 s. The linger is inside every figure, since
# ``ts`` is stamped before the message is handed to the client.
PACED_LINGER_MS = 5
# Each level's p99 and cores are also given per window of this many seconds: on the embedded
# broker they grow within a level (its fetch cost grows with the batches a partition holds),
# so one figure for a whole level hides whether it was flat or a ramp.
WINDOW_S = 2.0


@dataclass(frozen=True, slots=True)
class Latency:
    """Percentiles at one offered rate; ``hop`` is the broker alone (no worker in between)."""

    share: float
    rate_msgs_per_s: float
    achieved_msgs_per_s: float
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    hop: bool = False
    # cores per process while the producer paced (worker, broker, bench, as known)
    cores: dict[str, float] = field(default_factory=dict)
    # scm-worker run --processes of this level; ``share`` is of that configuration's capacity
    processes: int = 1
    # p99 of the messages sent in each WINDOW_S window, and the cores used in each
    p99_by_window_ms: tuple[float, ...] = ()
    cores_by_window: tuple[dict[str, float], ...] = ()
    window_s: float = WINDOW_S


def window_percentile(
    sent_s: npt.NDArray[np.float64],
    latency_ms: npt.NDArray[np.float64],
    start_s: float,
    seconds: float,
    window_s: float,
    q: float = 99.0,
) -> tuple[float, ...]:
    """The ``q``-th percentile of the latencies of messages sent in each ``window_s`` window
    of a ``seconds`` run from ``start_s``; a last, shorter window joins the one before it,
    and windows nothing was sent in are left out."""
    last = max(1, int(seconds // window_s)) - 1
    windows = np.minimum(np.floor((sent_s - start_s) / window_s), last).astype(np.int64)
    return tuple(
        float(np.percentile(latency_ms[windows == k], q)) for k in np.unique(windows[windows >= 0])
    )


class Level(NamedTuple):
    """A paced level: ``share`` of ``capacity`` (msg/s), served by ``processes`` processes."""

    share: float
    capacity: float
    processes: int = 1


def _paced(
    producer: Producer,
    topic: str,
    templates: Sequence[tuple[bytes, bytes]],
    rate: float,
    seconds: float,
) -> tuple[int, float]:
    """Send at ``rate`` for ``seconds``; return how many were sent and the rate achieved."""
    # Split once, so that stamping a message is two concatenations: the paced producer shares
    # the machine with the worker and the broker, and its own CPU is not what is measured.
    split = [(key, *around_ts(template)) for key, template in templates]
    sent = 0
    started = time.perf_counter()
    end = started + seconds
    while (now := time.perf_counter()) < end:
        due = int((now - started) * rate) - sent
        ts = ts_field(time.time())
        for _ in range(due):
            key, head, tail = split[sent % len(split)]
            value = head + ts + tail
            while True:
                try:
                    producer.produce(topic, value, key)
                    break
                except BufferError:
                    producer.poll(0.01)
            sent += 1
        producer.poll(0)
        time.sleep(TICK_S)
    producer.flush(30)
    return sent, sent / (time.perf_counter() - started)


def _level(
    producer: Producer,
    results: Consumer,
    topic: str,
    templates: Sequence[tuple[bytes, bytes]],
    share: float,
    rate: float,
    seconds: float,
    alive: Callable[[], bool],
    bar: Progress,
    watch: dict[str, int],
    *,
    hop: bool = False,
    window_s: float = WINDOW_S,
) -> Latency:
    outcome: list[tuple[int, float]] = []
    thread = threading.Thread(
        target=lambda: outcome.append(_paced(producer, topic, templates, rate, seconds)),
        name="bench-paced-producer",
    )
    latencies: list[float] = []
    sent_at: list[float] = []

    def record(message: Message, now: float) -> None:
        value = message.value()
        ts = result_ts(value) if value is not None else None
        if ts is not None and ts > 0:  # warm-up messages carry ts 0
            latencies.append(now - ts)
            sent_at.append(ts)

    what = "one broker hop" if hop else "latency"
    bar.start(f"{what} at {share:.0%}", int(rate * seconds))
    started = time.time()
    thread.start()
    seen = Arrivals()
    meter, window = CpuMeter(watch), CpuMeter(watch)
    meter.start()
    window.start()
    by_window: list[dict[str, float]] = []
    while thread.is_alive():  # read while the producer paces, so latencies are not queued
        count_until(results, UNBOUNDED, READ_SLICE_S, each=record, progress=bar.update, into=seen)
        if time.time() - started >= window_s * (len(by_window) + 1):
            by_window.append(window.cores())
            window = CpuMeter(watch)
            window.start()
    thread.join()
    cores = meter.cores()
    sent, achieved = outcome[0]
    count_until(results, sent, SETTLE_TIMEOUT_S, alive=alive, each=record, into=seen)
    if seen.count < sent:
        raise FatalError(f"bench: latency at {share:.0%}: sent {sent}, results {seen.count}")
    ms = np.array(latencies) * 1000
    bar.finish(f"p50 {np.percentile(ms, 50):.1f} ms, p99 {np.percentile(ms, 99):.1f} ms")
    return Latency(
        share,
        rate,
        achieved,
        len(latencies),
        float(np.percentile(ms, 50)),
        float(np.percentile(ms, 99)),
        float(ms.max()),
        hop,
        cores,
        p99_by_window_ms=window_percentile(np.array(sent_at), ms, started, seconds, window_s),
        cores_by_window=tuple(by_window),
        window_s=window_s,
    )


def broker_hop(
    bootstrap: str,
    producer: Producer,
    templates: Sequence[tuple[bytes, bytes]],
    rate: float,
    share: float,
    seconds: float,
    bar: Progress,
    watch: dict[str, int],
    window_s: float = WINDOW_S,
    partitions: int = 1,
) -> Latency:
    """The paced stream read straight off a topic of its own: the broker alone, no worker."""
    topic = f"hop-{uuid.uuid4().hex[:8]}"
    create_topics(bootstrap, [topic], partitions=partitions)
    direct = reader(bootstrap, "latency-hop")
    direct.subscribe([topic])
    try:
        producer.produce(topic, b"warm-up")
        producer.flush(30)
        count_until(direct, 1, 60)  # the group join, before the clock starts
        return _level(
            producer,
            direct,
            topic,
            templates,
            share,
            rate,
            seconds,
            lambda: True,
            bar,
            watch,
            hop=True,
            window_s=window_s,
        )
    finally:
        direct.close()


def _worker_level(
    bootstrap: str,
    bundle: Path,
    producer: Producer,
    topics: BenchTopics,
    templates: Sequence[tuple[bytes, bytes]],
    share: float,
    rate: float,
    seconds: float,
    workdir: Path,
    bar: Progress,
    watch: dict[str, int],
    processes: int,
) -> Latency:
    """A worker of its own on fresh topics, warmed up, then ``rate`` for ``seconds``.

    With ``processes`` > 1 the clock starts once every child holds its partitions: a
    rebalance inside the paced run would measure the group join, not the worker.
    """
    results = reader(bootstrap, f"latency-results-{share * 100:.0f}")
    results.subscribe([topics.results])
    extra = ("--processes", str(processes)) if processes > 1 else ()
    command = worker_command(bootstrap, bundle, topics, workdir, *extra)
    try:
        with running_worker(command, workdir / f"{topics.input}.worker.log") as worker:
            deadline = time.monotonic() + GROUP_TIMEOUT_S
            partitions = level_partitions(processes)
            while processes > 1 and not worker.settled(processes, partitions):
                if not worker.alive() or time.monotonic() > deadline:
                    raise FatalError(f"bench: the group never settled: {worker.tail()}")
                time.sleep(0.1)  # polling the worker's log for the assignment
            for key, template in templates[:WARMUP_MESSAGES]:
                producer.produce(topics.input, stamped(template, 0.0), key)
            producer.flush(30)
            warm = count_until(results, WARMUP_MESSAGES, 120, alive=worker.alive)
            if warm.count < WARMUP_MESSAGES:
                raise FatalError(f"bench: the worker never answered: {worker.tail()}")
            level = _level(
                producer,
                results,
                topics.input,
                templates,
                share,
                rate,
                seconds,
                worker.alive,
                bar,
                {"worker": worker.process.pid, **watch},
            )
            return replace(level, processes=processes)
    finally:
        results.close()


def level_partitions(processes: int) -> int:
    """Input partitions of a paced level: the smallest multiple of ``processes`` from 3 on.

    The embedded broker's CPU per request grows with the partitions a request spans (a paced
    level on 6 partitions took ~0.9 of a core where 3 took ~0.7, and the worker's p99 tripled
    on the saturated machine), so the levels use as few as give every process an equal share;
    3 for one process, as every earlier run.
    """
    return processes * -(-3 // processes)


def paced_producer(bootstrap: str) -> Producer:
    """The producer the paced levels send with, lingering as a fleet's would."""
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": PACED_LINGER_MS,
            "queue.buffering.max.messages": 1_000_000,
        }
    )


def latencies(
    bootstrap: str,
    bundle: Path,
    templates: Sequence[tuple[bytes, bytes]],
    levels: Sequence[Level],
    seconds: float,
    workdir: Path,
    bar: Progress,
    watch: dict[str, int] | None = None,
) -> list[Latency]:
    """Each level for ``seconds``, each with a worker and topics of its own.

    First, the floor: the same paced stream read straight off a topic, one broker hop with
    no worker, at the first level's rate. The worker's path has two such hops. Fresh topics
    per level because the embedded broker's CPU per request grows with the partition it
    serves (at a steady 25,000 msg/s into one topic: 0.24 of a core after 4 s, 0.43 after
    14 s, 0.82 after 30 s; a million records in another topic make no difference): on shared
    topics, each level would pay for the records of the levels before it. ``watch`` (role ->
    pid) names processes besides the worker whose cores are reported.
    """
    watch = watch or {}
    producer = paced_producer(bootstrap)
    first = levels[0]
    out = [
        broker_hop(
            bootstrap,
            producer,
            templates,
            first.share * first.capacity,
            first.share,
            seconds,
            bar,
            watch,
        )
    ]
    for level in levels:
        name = f"latency-{level.share * 100:.0f}-p{level.processes}"
        out.append(
            _worker_level(
                bootstrap,
                bundle,
                producer,
                BenchTopics.fresh(bootstrap, name, level_partitions(level.processes)),
                templates,
                level.share,
                level.share * level.capacity,
                seconds,
                workdir,
                bar,
                watch,
                level.processes,
            )
        )
    return out
