"""The worker end to end on a pre-filled topic, until every result is on the results topic.

Used twice: for throughput (``--messages``) and for memory (``--backlog``, a million by
default). Completion is counted by consuming the results topic, never by sleeping; a result
a consumer can read has been acknowledged by the broker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from worker.bench.cpu import CpuMeter
from worker.bench.kafka_io import BenchTopics, count_until, reader
from worker.bench.worker_proc import running_worker, worker_command
from worker.errors import FatalError


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
) -> Drain:
    """Start ``scm-worker run`` on ``topics.input`` (holding ``n`` messages) and time it.

    The rate runs from the producer timestamp of the first result to the moment the last
    one was read, so the group join (~3 s) and bundle loading are left out; so are they from
    the cores each process used (the worker's, and those of ``watch``: role -> pid).
    """
    command = worker_command(bootstrap, bundle, topics, workdir)
    results = reader(bootstrap, "drain-results")
    results.subscribe([topics.results])
    try:
        with running_worker(command, workdir / f"{topics.input}.worker.log") as worker:
            meter = CpuMeter({"worker": worker.process.pid, **(watch or {})})

            def arrived(done: int) -> None:
                if done and not meter.running:
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
    elapsed = seen.last_seen - seen.first_created
    return Drain(n, n / elapsed if elapsed > 0 else 0.0, peak, cores)
