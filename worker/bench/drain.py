"""The worker end to end on a pre-filled topic, until every result is on the results topic.

Used twice: for throughput (``--messages``) and for memory (``--backlog``, a million by
default). Completion is counted by consuming the results topic, never by sleeping; a result
a consumer can read has been acknowledged by the broker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from worker.bench.cpu import CpuMeter
from worker.bench.kafka_io import INPUT_PARTITIONS, BenchTopics, count_until, reader
from worker.bench.worker_proc import running_worker, worker_command
from worker.errors import FatalError

SETTLE_CHECK_S = 0.25  # how often the worker's log is read for the group's assignment


@dataclass(frozen=True, slots=True)
class Drain:
    """What one drain measured."""

    messages: int
    msgs_per_s: float
    peak_rss_bytes: int | None
    # cores per process (worker, and the watched ones) from the first result to the last
    cores: dict[str, float]


def drain(
    bootstrap: str,
    bundle: Path,
    topics: BenchTopics,
    n: int,
    workdir: Path,
    progress: Callable[[int], None],
    timeout_s: float = 900.0,
    watch: dict[str, int] | None = None,
    processes: int = 1,
) -> Drain:
    """Start ``scm-worker run`` on ``topics.input`` (holding ``n`` messages) and time it.

    The rate runs from the producer timestamp of the first result to the moment the last
    one was read, so the group join (~3 s) and bundle loading are left out; so are they from
    the cores each process used (the worker's, and those of ``watch``: role -> pid).

    With ``processes`` > 1 the first child to join starts alone and hands partitions over
    when the others join; the rate and the cores then run from the moment every child holds
    its share (counting the results that came after it), so that a rebalance is left out
    as the join is.
    """
    extra = ("--processes", str(processes)) if processes > 1 else ()
    command = worker_command(bootstrap, bundle, topics, workdir, *extra)
    results = reader(bootstrap, "drain-results")
    results.subscribe([topics.results])
    start: tuple[float, int] | None = None  # (when, results by then) once the group settled
    try:
        with running_worker(command, workdir / f"{topics.input}.worker.log") as worker:
            meter = CpuMeter({"worker": worker.process.pid, **(watch or {})})
            checked = 0.0

            def arrived(done: int) -> None:
                nonlocal start, checked
                now = time.time()
                if start is None and now - checked >= SETTLE_CHECK_S:
                    checked = now
                    if worker.settled(processes, INPUT_PARTITIONS):
                        start = (now, done)
                if done and start is not None and not meter.running:
                    meter.start()
                progress(done)

            seen = count_until(results, n, timeout_s, alive=worker.alive, progress=arrived)
            peak, cores = worker.peak_rss(), meter.cores()
            if seen.count < n:
                raise FatalError(
                    f"bench: expected {n} results, found {seen.count}: {worker.tail()}"
                )
    finally:
        results.close()
    assert seen.first_created is not None and seen.last_seen is not None
    if start is None or start[1] == 0:  # settled before the first result: the whole drain
        elapsed, counted = seen.last_seen - seen.first_created, n
    else:
        elapsed, counted = seen.last_seen - start[0], n - start[1]
    return Drain(n, counted / elapsed if elapsed > 0 else 0.0, peak, cores)
