"""Counts, sinks, health probes: the monitoring pieces that need no broker."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from worker.inference.decode import strict_decode
from worker.monitoring.counts import batch_counts
from worker.monitoring.metrics import Health, Metrics, serve
from worker.monitoring.sinks import FanOut, JsonlSink


class TestCounts:
    """Sample-level and element-level counts are both there and never confused."""

    def test_levels_differ(self) -> None:
        """Two samples, four elements: one bottom element makes one bottom sample."""
        result = strict_decode(
            np.array([[1.0, 1.0], [1.0, 1.0]], np.float32),
            np.array([[1.0, 0.0], [1.0, 1.0]], np.float32),
            1e-3,
        )
        counts = batch_counts(result, ["solver", "accept"])
        assert (counts.samples, counts.samples_bottom) == (2, 1)
        assert (counts.elements, counts.elements_bottom) == (4, 1)
        rates = counts.rates()
        assert rates["samples_bottom_rate"] == 0.5 and rates["elements_bottom_rate"] == 0.25
        assert rates["samples_route_solver_rate"] == 0.5

    def test_empty_batch_rates_are_zero(self) -> None:
        """No NaN rates from an empty batch."""
        empty = strict_decode(np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32), 1e-3)
        assert set(batch_counts(empty, []).rates().values()) == {0.0}


class TestJsonlSink:
    """The file sink rotates, keeps the reference's format, and drops instead of blocking."""

    def test_rotation_and_format(self, tmp_path: Path) -> None:
        """Lines are sorted-key JSON with NaN as null; the file rotates past max_bytes."""
        path = tmp_path / "m" / "events.jsonl"
        sink = JsonlSink(path, max_bytes=2000, backups=2)
        for i in range(100):
            sink.emit({"event": "gap-trigger", "rate": float("nan"), "i": i})
        sink.close()
        assert path.with_name("events.jsonl.1").exists()
        line = path.read_text().splitlines()[0]
        assert json.loads(line)["rate"] is None
        assert line == json.dumps(json.loads(line), sort_keys=True)

    def test_full_queue_drops_and_counts(self, tmp_path: Path) -> None:
        """A stuck writer never blocks emit: overflow is counted."""
        sink = JsonlSink(tmp_path / "e.jsonl", queue_size=1)
        sink.close()  # the writer is gone: nothing drains the queue any more
        for _ in range(5):
            sink.emit({"event": "x"})
        assert sink.dropped == 4

    def test_fanout_survives_a_broken_sink(self) -> None:
        """One sink raising does not stop the others."""
        seen: list[dict[str, object]] = []

        class Broken:
            def emit(self, event: dict[str, object]) -> None:
                raise RuntimeError("disk on fire")

            def close(self) -> None:
                raise RuntimeError("still on fire")

        class Good:
            def emit(self, event: dict[str, object]) -> None:
                seen.append(event)

            def close(self) -> None:
                pass

        fan = FanOut([Broken(), Good()])
        fan.emit({"event": "x"})
        fan.close()
        assert seen == [{"event": "x"}]


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


class TestHealth:
    """/healthz fails when the loop stops turning or stops progressing while work waits."""

    def test_blocked_loop_turns_unhealthy(self) -> None:
        """Over HTTP: healthy while beating; 503 once the loop is blocked past the timeout."""
        now = [100.0]
        health = Health(stall_timeout_s=5, clock=lambda: now[0])
        health.beat(progressed=True, work_waiting=False)
        server = serve(0, Metrics(), health, host="127.0.0.1")
        base = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            assert _status(f"{base}/healthz") == 200
            now[0] += 6  # the loop did not beat for 6 s: blocked
            assert _status(f"{base}/healthz") == 503
            assert _status(f"{base}/readyz") == 503  # no partitions, no broker yet
            health.bundle_loaded = health.broker_connected = True
            health.assigned = 3
            assert _status(f"{base}/readyz") == 200
            assert _status(f"{base}/metrics") == 200
        finally:
            server.shutdown()
            server.server_close()

    def test_turning_without_progress_while_work_waits(self) -> None:
        """A loop that spins but acknowledges nothing while messages wait is a stall."""
        now = [0.0]
        health = Health(stall_timeout_s=5, clock=lambda: now[0])
        for _ in range(10):
            now[0] += 1
            health.beat(progressed=False, work_waiting=True)
        assert health.liveness()[0] is False
        health.beat(progressed=True, work_waiting=True)
        assert health.liveness()[0] is True


def test_events_tail_highlights_alerts() -> None:
    """An alert line starts with ALERT and its state; colour only when asked."""
    from worker.cli.events_cmd import render

    alert = {
        "event": "acceptance-drift-alert",
        "state": "raised",
        "scope": "fleet",
        "metric": "accept_rate",
        "accept_rate": 0.7,
        "baseline": 0.95,
        "delta": -0.25,
        "n": 1200,
        "p_value": 1e-30,
        "window_start": 300.0,
    }
    assert render(alert, color=False).startswith("ALERT RAISED")
    assert "\033[31m" in render(alert, color=True)
    assert "gap-trigger" in render({"event": "gap-trigger", "count": 2}, color=False)


def test_consumer_lag_of_a_revoked_partition_disappears() -> None:
    """After a rebalance the statistics stop listing a partition: its series goes too."""
    import orjson
    from prometheus_client import generate_latest

    from worker.monitoring.metrics import Metrics

    def stats(*partitions: int) -> str:
        parts = {str(p): {"consumer_lag": 10 * (p + 1)} for p in partitions}
        parts["-1"] = {"consumer_lag": -1}
        return orjson.dumps({"topics": {"features": {"partitions": parts}}}).decode()

    metrics = Metrics()
    metrics.observe_stats(stats(0, 1))
    text = generate_latest(metrics.registry).decode()
    assert 'scm_consumer_lag{partition="1",topic="features"} 20.0' in text
    metrics.observe_stats(stats(0))
    text = generate_latest(metrics.registry).decode()
    assert 'partition="1"' not in text
    assert 'scm_consumer_lag{partition="0",topic="features"} 10.0' in text
