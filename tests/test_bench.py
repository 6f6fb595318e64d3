"""``scm-worker bench --quick`` runs end to end and reports every figure; no timing asserted."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.bench.report import TARGETS

pytestmark = pytest.mark.kafka

RATES = ("ort_samples_per_s", "passthrough_msgs_per_s", "worker_msgs_per_s", "naive_msgs_per_s")


@pytest.fixture(scope="module", name="report")
def _report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    # Two rounds, so that the turn-taking and the medians are exercised too.
    command = [sys.executable, "-m", "worker", "bench", "--quick", "--rounds", "2"]
    command += ["--json", str(out)]
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        command += ["--bootstrap-servers", os.environ["KAFKA_BOOTSTRAP_SERVERS"]]
    done = subprocess.run(command, capture_output=True, text=True, timeout=280, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return json.loads(Path(out).read_text()), done.stdout


class TestQuickBench:
    """The quick run is the benchmark's smoke test, so it never rots."""

    def test_rates_are_positive(self, report: tuple[dict[str, Any], str]) -> None:
        """Every throughput phase ran and measured something."""
        doc, _ = report
        for name in RATES:
            assert doc[name] > 0 and math.isfinite(doc[name]), name

    def test_ratios_are_the_quotients(self, report: tuple[dict[str, Any], str]) -> None:
        """The two ratios are computed from the rates of the same run."""
        doc, _ = report
        worker = doc["worker_msgs_per_s"]
        assert math.isclose(
            doc["worker_vs_passthrough"], worker / doc["passthrough_msgs_per_s"], rel_tol=1e-9
        )
        assert math.isclose(doc["worker_vs_naive"], worker / doc["naive_msgs_per_s"], rel_tol=1e-9)

    def test_rates_are_medians_of_the_rounds(self, report: tuple[dict[str, Any], str]) -> None:
        """Each throughput phase ran twice, on fresh output topics; its figure is the median."""
        doc, table = report
        assert doc["settings"]["rounds"] == 2
        for phase in ("passthrough", "worker", "naive"):
            rates = doc["rounds_msgs_per_s"][phase]
            assert len(rates) == 2 and all(r > 0 for r in rates)
            assert math.isclose(doc[f"{phase}_msgs_per_s"], statistics.median(rates))
        assert "median of 2" in table

    def test_latency_percentiles_are_ordered(self, report: tuple[dict[str, Any], str]) -> None:
        """At 50 % and 80 % of capacity (and for the broker floor): 0 < p50 <= p99 <= max."""
        doc, _ = report
        assert {"at_50pct", "at_80pct", "broker_hop_at_50pct"} <= set(doc["latency_ms"])
        for level in doc["latency_ms"].values():
            assert 0 < level["p50"] <= level["p99"] <= level["max"]
            assert level["count"] > 0
            # a quick level (1.5 s) is one 2-s window, whose p99 is the level's
            assert level["window_s"] == 2.0
            assert level["p99_by_window"] == [pytest.approx(level["p99"])]

    def test_memory_and_machine(self, report: tuple[dict[str, Any], str]) -> None:
        """A peak RSS was read, and the machine is described."""
        doc, _ = report
        assert doc["peak_rss_mb"] > 10
        assert doc["machine"]["cores"] >= 1 and doc["machine"]["cpu_model"]
        assert doc["settings"]["quick"] is True

    def test_cores_per_process(self, report: tuple[dict[str, Any], str]) -> None:
        """The worker's drains and the worker's latency levels say how many cores the worker,
        the embedded broker and the bench itself used; the broker hop has no worker."""
        doc, table = report
        levels = doc["latency_ms"]
        for cores in (doc["cores"]["worker"], doc["cores"]["memory"], levels["at_50pct"]["cores"]):
            assert set(cores) == {"worker", "broker", "bench"}
            assert cores["worker"] > 0
            assert all(0 <= c <= doc["machine"]["cores"] + 0.05 for c in cores.values())
        assert set(levels["broker_hop_at_50pct"]["cores"]) == {"broker", "bench"}
        assert "cores used" in table and "worker drain" in table

    def test_table_and_targets(self, report: tuple[dict[str, Any], str]) -> None:
        """The printed table names the machine and gives a verdict for every target."""
        doc, table = report
        assert doc["machine"]["cpu_model"] in table
        assert len(doc["targets"]) == len(TARGETS)
        assert all(isinstance(v, bool) for v in doc["targets"].values())
        assert "worker_vs_passthrough" in table


def test_unknown_phase_is_a_usage_error() -> None:
    """A misspelt phase exits 2 before touching a broker."""
    done = subprocess.run(
        [sys.executable, "-m", "worker", "bench", "--phases", "ort,warp"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "warp" in done.stderr


class _Record:
    def error(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_000)


class _QueuedConsumer:
    """Hands out queued records; notes every wait the reader asks librdkafka for."""

    def __init__(self, queued: int) -> None:
        self.queued = queued
        self.waits: list[tuple[str, float]] = []

    def poll(self, timeout: float) -> _Record | None:
        self.waits.append(("poll", timeout))
        if not self.queued:
            return None
        self.queued -= 1
        return _Record()

    def consume(self, n: int, timeout: float) -> list[_Record]:
        self.waits.append(("consume", timeout))
        take = min(n, self.queued)
        self.queued -= take
        return [_Record() for _ in range(take)]


def test_bench_reader_never_waits_in_consume() -> None:
    """consume(n, t) waits out t unless n records came: the reader blocks in poll() only."""
    from worker.bench.kafka_io import count_until

    consumer = _QueuedConsumer(25)
    seen = count_until(consumer, 25, 5.0)  # type: ignore[arg-type]
    assert seen.count == 25
    assert all(timeout == 0 for kind, timeout in consumer.waits if kind == "consume")
    assert ("poll", 0.1) in consumer.waits


def test_a_stamped_message_is_the_template_with_its_ts_set() -> None:
    from worker.bench.messages import feature_messages, result_ts, stamped

    templates = [template for _, template in feature_messages(400, ts=0.0)]
    assert any(b"NaN" in template for template in templates)  # the lenient kind, too
    for template in templates:
        for ts in (1.7e9 + 0.123456, 0.0, 1e-7):
            doc = json.loads(stamped(template, ts))
            # dumped for the comparison: NaN is not equal to itself
            assert json.dumps(doc) == json.dumps({**json.loads(template), "ts": ts})
            assert result_ts(stamped(template, ts)) == ts


class TestCpuMeter:
    """Cores per process from /proc: a busy process shows CPU, a gone one is left out."""

    def test_a_busy_loop_uses_cpu_and_an_unknown_pid_is_left_out(self) -> None:
        import time

        from worker.bench.cpu import CpuMeter, cpu_seconds

        assert cpu_seconds(os.getpid()) is not None
        meter = CpuMeter({"bench": os.getpid(), "gone": 2**22 + 12345})
        assert meter.cores() == {}  # not started
        meter.start()
        deadline = time.thread_time() + 0.3
        while time.thread_time() < deadline:  # 0.3 s of this thread's own CPU
            pass
        cores = meter.cores()
        assert set(cores) == {"bench"}
        assert 0.05 < cores["bench"] <= 2.0


def test_cores_table_lists_the_measured_phases() -> None:
    from worker.bench.report import table

    hop = {"p50": 1.0, "p99": 2.0, "max": 3.0, "achieved_msgs_per_s": 10.0, "count": 5}
    doc: dict[str, Any] = {
        "machine": {"cpu_model": "cpu", "cores": 2},
        "settings": {
            "bundle_name": "b",
            "adapter": "a",
            "max_batch": 512,
            "max_wait_ms": 5,
            "broker": "x",
            "quick": False,
            "messages": 1,
            "naive_messages": 1,
            "backlog": 1,
        },
        "ort_samples_per_s": None,
        "passthrough_msgs_per_s": None,
        "worker_msgs_per_s": 1.0,
        "naive_msgs_per_s": None,
        "latency_ms": {
            "broker_hop_at_50pct": {**hop, "cores": {"broker": 0.3, "bench": 0.2}},
            "at_50pct": {**hop, "cores": {"worker": 0.75, "broker": 0.6, "bench": 0.25}},
        },
        "peak_rss_mb": None,
        "memory_drain_msgs_per_s": None,
        "cores": {"worker": {"worker": 1.02, "broker": 0.25, "bench": 0.1}},
        "worker_vs_passthrough": None,
        "worker_vs_naive": None,
        "targets": {},
    }
    lines = table(doc).splitlines()
    start = next(i for i, line in enumerate(lines) if "cores used (of 2)" in line)
    assert lines[start].split()[-3:] == ["worker", "broker", "bench"]
    assert lines[start + 1].split() == ["worker", "drain", "1.02", "0.25", "0.10"]
    assert lines[start + 2].split() == ["1", "broker", "hop", "50%", "-", "0.30", "0.20"]
    assert lines[start + 3].split() == ["latency", "50%", "0.75", "0.60", "0.25"]
    assert "memory drain" not in table(doc)
    assert "cores used" not in table({**doc, "cores": {}, "latency_ms": {}})


def test_a_level_of_several_windows_gets_a_line_of_them() -> None:
    from worker.bench.report import _windows

    level = {
        "window_s": 2.0,
        "p99_by_window": [14.2, 28.0, 61.5],
        "cores_by_window": [{"broker": 0.41, "worker": 0.6}, {"broker": 0.7}, {"worker": 0.5}],
    }
    assert _windows(level) == "  p99 by 2-s window: 14 / 28 / 62 ms; broker cores 0.41 / 0.70"


class TestWindowPercentile:
    """Per-window percentiles, by the time each message was sent."""

    def test_windows_in_order_and_a_short_last_one_joins_the_one_before(self) -> None:
        from worker.bench.latency import window_percentile

        sent = np.array([10.1, 10.5, 12.1, 12.2, 14.0, 15.9, 16.0, 9.0])
        ms = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 100.0])
        # 6 s from 10.0: windows [10, 12), [12, 14), [14, 16]; 9.0 was sent before the start
        assert window_percentile(sent, ms, 10.0, 6.0, 2.0, q=50) == (1.5, 3.5, 6.0)

    def test_an_empty_window_is_left_out_and_a_run_shorter_than_a_window_is_one(self) -> None:
        from worker.bench.latency import window_percentile

        sent = np.array([0.5, 0.6, 4.5])
        ms = np.array([1.0, 3.0, 9.0])
        assert window_percentile(sent, ms, 0.0, 6.0, 2.0, q=50) == (2.0, 9.0)
        assert window_percentile(sent[:2], ms[:2], 0.0, 1.5, 2.0, q=100) == (3.0,)

    @given(st.lists(st.tuples(st.floats(0, 9.99), st.floats(0, 1e4)), min_size=1, max_size=200))
    def test_every_window_lies_within_the_whole_runs_range(
        self, rows: list[tuple[float, float]]
    ) -> None:
        from worker.bench.latency import window_percentile

        sent, ms = (np.array(column) for column in zip(*rows, strict=True))
        windows = window_percentile(sent, ms, 0.0, 10.0, 2.0)
        assert 1 <= len(windows) <= 5
        assert all(ms.min() <= value <= ms.max() for value in windows)


class TestProcessesInTheBench:
    """``--worker-processes``: the drain waits for the group to settle, counts the whole tree."""

    def test_the_quick_run_measures_both_drains(self, report: tuple[dict[str, Any], str]) -> None:
        from worker.cli.supervisor import usable_cores

        doc, table = report
        processes = doc["settings"]["worker_processes"]
        assert processes == usable_cores()
        if processes == 1:  # a one-core machine: the one-process drain is the drain
            assert doc["worker_1p_msgs_per_s"] is None and "1 process" not in table
            return
        assert doc["worker_1p_msgs_per_s"] > 0
        assert len(doc["rounds_msgs_per_s"]["worker_1p"]) == 2
        assert math.isclose(
            doc["worker_1p_vs_passthrough"],
            doc["worker_1p_msgs_per_s"] / doc["passthrough_msgs_per_s"],
            rel_tol=1e-9,
        )
        assert f"scm-worker run --processes {processes}" in table
        assert "worker, 1 process" in table and "worker_1p_vs_naive" in table

    def test_assignments_replayed_from_the_log(self) -> None:
        from worker.bench.worker_proc import holdings, settled

        def line(event: str, process: int | None, partitions: list[int]) -> str:
            entry: dict[str, Any] = {"event": event, "partitions": [["t", p] for p in partitions]}
            if process is not None:
                entry["process"] = process
            return json.dumps(entry)

        first = [line("worker.partitions_assigned", 0, [0, 1, 2, 3])]
        assert holdings("\n".join(first)) == {0: {0, 1, 2, 3}}
        assert not settled("\n".join(first), 2, 4)  # the second child has not joined
        handed = [
            *first,
            "not json: librdkafka's own line",
            line("worker.partitions_revoked", 0, [2, 3]),
            line("worker.partitions_assigned", 0, [0, 1]),
            line("worker.partitions_assigned", 1, [2, 3]),
        ]
        assert holdings("\n".join(handed)) == {0: {0, 1}, 1: {2, 3}}
        assert settled("\n".join(handed), 2, 4)
        # a single worker logs no index; a partition held twice is not settled yet
        assert settled(line("worker.partitions_assigned", None, [0, 1]), 1, 2)
        overlap = [
            line("worker.partitions_assigned", 0, [0, 1]),
            line("worker.partitions_assigned", 1, [1]),
        ]
        assert not settled("\n".join(overlap), 2, 2)

    def test_a_role_counts_its_children(self) -> None:
        import time

        from worker.bench.cpu import CpuMeter, cpu_seconds, process_tree

        busy = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass"
        child = subprocess.Popen([sys.executable, "-c", busy + "\ntime.sleep(60)"])
        try:
            assert process_tree(os.getpid())[0] == os.getpid()
            assert child.pid in process_tree(os.getpid())
            meter = CpuMeter({"bench": os.getpid()})
            meter.start()
            deadline = time.monotonic() + 30
            while (cpu_seconds(child.pid) or 0.0) < 0.35 and time.monotonic() < deadline:
                time.sleep(0.05)  # polling the child's CPU, not guessing a delay
            # the child's CPU counts for its parent's role although this thread slept
            assert meter.cores()["bench"] > 0.05
            # unless the child is a role of its own
            assert child.pid not in process_tree(os.getpid(), frozenset({child.pid}))
        finally:
            child.kill()
            child.wait()
