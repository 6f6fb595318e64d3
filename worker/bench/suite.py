"""Runs the selected phases in order on one broker and collects their figures."""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from worker.bench import PHASES, machine
from worker.bench.drain import drain
from worker.bench.kafka_io import INPUT_PARTITIONS, BenchTopics, fill
from worker.bench.latency import Level, latencies
from worker.bench.messages import feature_messages
from worker.bench.naive import naive_msgs_per_s
from worker.bench.ort_phase import ort_samples_per_s
from worker.bench.passthrough import passthrough_msgs_per_s
from worker.bench.progress import Progress
from worker.bench.report import Figures
from worker.bundle import verify_bundle
from worker.config import WorkerConfig
from worker.inference import BundleRunner
from worker.kafka.embedded import EmbeddedBroker

LATENCY_SHARES = (0.5, 0.8)


@dataclass(frozen=True, slots=True)
class BenchSettings:
    """What to measure and how much of it."""

    bundle: Path
    messages: int
    naive_messages: int
    backlog: int
    latency_seconds: float
    ort_seconds: float
    phases: tuple[str, ...]
    bootstrap_servers: str | None = None
    quick: bool = False
    rounds: int = 1
    # scm-worker run --processes for the worker drain and the paced levels; with more than
    # one, a one-process drain runs next to it in every round.
    worker_processes: int = 1


def _median(rates: list[float]) -> float | None:
    return statistics.median(rates) if rates else None


def _mean_cores(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Each process's cores, averaged over the rounds that measured it."""
    roles = dict.fromkeys(role for cores in rounds for role in cores)
    return {role: round(statistics.mean(c[role] for c in rounds if role in c), 2) for role in roles}


def worker_defaults() -> tuple[int, int]:
    """The worker's default batching (max batch, max wait ms): what the bench runs with."""
    fields = WorkerConfig.model_fields
    return int(fields["max_batch"].default), int(fields["max_wait_ms"].default)


@contextlib.contextmanager
def _broker(bootstrap: str | None) -> Iterator[tuple[str, dict[str, int]]]:
    """Bootstrap servers, and the processes whose cores are reported (the bench; the broker
    when it is the embedded one)."""
    watch = {"bench": os.getpid()}
    if bootstrap is not None:
        yield bootstrap, watch
        return
    with EmbeddedBroker() as broker:
        assert broker.process is not None
        yield broker.bootstrap_servers, {**watch, "broker": broker.process.pid}


def _levels(figures: Figures, settings: BenchSettings) -> list[Level]:
    """The paced levels: the default one-process worker at each share of its own capacity,
    and, with more processes, those at the first share of theirs."""
    one = figures.worker_1p_msgs_per_s or figures.worker_msgs_per_s
    assert one is not None and figures.worker_msgs_per_s is not None
    levels = [Level(share, one) for share in LATENCY_SHARES]
    if settings.worker_processes > 1:
        levels.append(
            Level(LATENCY_SHARES[0], figures.worker_msgs_per_s, settings.worker_processes)
        )
    return levels


def run_suite(settings: BenchSettings, bar: Progress) -> Figures:
    """Every selected phase, on one broker, in the order of PHASES."""
    runner = BundleRunner(verify_bundle(settings.bundle))
    max_batch, max_wait_ms = worker_defaults()
    phases = set(settings.phases)
    figures = Figures(
        machine=machine.describe(),
        settings={
            "bundle": str(settings.bundle),
            "bundle_name": settings.bundle.name,
            "bundle_id": runner.bundle.digest,
            "adapter": runner.adapter.name,
            "messages": settings.messages,
            "naive_messages": settings.naive_messages,
            "backlog": settings.backlog,
            "latency_seconds_per_level": settings.latency_seconds,
            "max_batch": max_batch,
            "max_wait_ms": max_wait_ms,
            "broker": settings.bootstrap_servers or "embedded Tansu (memory)",
            "quick": settings.quick,
            "rounds": settings.rounds,
            "worker_processes": settings.worker_processes,
            "input_partitions": INPUT_PARTITIONS,
            "phases": [p for p in PHASES if p in phases],
        },
    )
    if "ort" in phases:
        bar.start("ONNX Runtime alone", 1)
        figures.ort_samples_per_s = ort_samples_per_s(runner, max_batch, settings.ort_seconds)
        bar.finish(f"{figures.ort_samples_per_s:,.0f} samples/s")
    if not phases - {"ort"}:
        return figures
    input_name = runner.inputs[0].name
    with (
        _broker(settings.bootstrap_servers) as (bootstrap, watch),
        tempfile.TemporaryDirectory(prefix="scm-bench-") as tmp,
    ):
        workdir = Path(tmp)
        _kafka_phases(bootstrap, watch, settings, runner, input_name, phases, figures, workdir, bar)
    figures.machine["load_average_end"] = machine.load_average()
    return figures


def _kafka_phases(
    bootstrap: str,
    watch: dict[str, int],
    settings: BenchSettings,
    runner: BundleRunner,
    input_name: str,
    phases: set[str],
    figures: Figures,
    workdir: Path,
    bar: Progress,
) -> None:
    bundle, n = settings.bundle, settings.messages
    total = max(n, settings.backlog if "memory" in phases else 0, settings.naive_messages)
    bar.start("generating messages", 1)
    records = feature_messages(total, input_name=input_name, ts=round(time.time(), 3))
    bar.finish(f"{total:,} feature messages")
    main = BenchTopics.fresh(bootstrap, "main")
    if phases & {"passthrough", "worker", "naive"}:
        bar.start("pre-filling the topic", n)
        fill(bootstrap, main.input, records[:n], bar.update)
        bar.finish(f"{n:,} messages on {main.input}")
    # Passthrough, worker and naive loop take turns, round after round, on the same input
    # topic (fresh groups and output topics each time); each figure is the median of its
    # rounds, so a swing of the machine or the broker lands on every phase alike.
    runs: dict[str, list[float]] = {"passthrough": [], "worker": [], "worker_1p": [], "naive": []}
    cores: dict[str, list[dict[str, float]]] = {"worker": [], "worker_1p": []}
    for turn in range(1, settings.rounds + 1):
        tag = f" ({turn}/{settings.rounds})" if settings.rounds > 1 else ""
        if "passthrough" in phases:
            bar.start("passthrough" + tag, n)
            sink = BenchTopics.fresh(bootstrap, "passthrough").results
            rate = passthrough_msgs_per_s(bootstrap, main.input, sink, n, bar.update)
            runs["passthrough"].append(rate)
            bar.finish(f"{rate:,.0f} msg/s")
        if "worker" in phases:
            drains = [("worker", settings.worker_processes)]
            if settings.worker_processes > 1:
                drains.append(("worker_1p", 1))
            for name, processes in drains:
                label = "worker" if processes == 1 else f"worker, {processes} processes"
                bar.start(label + tag, n)
                topics = BenchTopics.outputs_for(bootstrap, main.input, name)
                drained = drain(
                    bootstrap,
                    bundle,
                    topics,
                    n,
                    workdir,
                    bar.update,
                    watch=watch,
                    processes=processes,
                )
                runs[name].append(drained.msgs_per_s)
                cores[name].append(drained.cores)
                bar.finish(f"{drained.msgs_per_s:,.0f} msg/s")
        if "naive" in phases:
            bar.start("naive loop" + tag, settings.naive_messages)
            sink = BenchTopics.fresh(bootstrap, "naive").results
            rate = naive_msgs_per_s(
                bootstrap, runner, main.input, sink, settings.naive_messages, bar.update
            )
            runs["naive"].append(rate)
            bar.finish(f"{rate:,.0f} msg/s")
    figures.rounds = {name: rates for name, rates in runs.items() if rates}
    figures.passthrough_msgs_per_s = _median(runs["passthrough"])
    figures.worker_msgs_per_s = _median(runs["worker"])
    figures.worker_1p_msgs_per_s = _median(runs["worker_1p"])
    figures.naive_msgs_per_s = _median(runs["naive"])
    for name, measured in cores.items():
        if measured:
            figures.cores[name] = _mean_cores(measured)
    if "latency" in phases and figures.worker_msgs_per_s:
        templates = feature_messages(min(total, 100_000), ts=0.0, input_name=input_name)
        figures.latency = latencies(
            bootstrap,
            bundle,
            templates,
            _levels(figures, settings),
            settings.latency_seconds,
            workdir,
            bar,
            watch,
        )
    if "memory" in phases:
        backlog = BenchTopics.fresh(bootstrap, "memory")
        bar.start("pre-filling the backlog", settings.backlog)
        fill(bootstrap, backlog.input, records[: settings.backlog], bar.update)
        bar.finish(f"{settings.backlog:,} messages on {backlog.input}")
        bar.start("memory (draining the backlog)", settings.backlog)
        result = drain(
            bootstrap, bundle, backlog, settings.backlog, workdir, bar.update, watch=watch
        )
        figures.peak_rss_bytes = result.peak_rss_bytes
        figures.cores["memory"] = result.cores
        figures.memory_drain_msgs_per_s = result.msgs_per_s
        peak = result.peak_rss_bytes or 0
        bar.finish(f"peak RSS {peak / 2**20:,.0f} MB at {result.msgs_per_s:,.0f} msg/s")
