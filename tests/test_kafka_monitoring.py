"""Monitoring on a running worker: metrics over HTTP, probes, JSONL and the events topic."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.kafka_support import Topics, any_broker, produce, read_all, start_worker, worker_command
from tests.test_kafka_worker import BUNDLE, valid_messages
from worker.cli import main
from worker.kafka.embedded import create_topics, free_port

pytestmark = pytest.mark.kafka


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, ConnectionError):
        return 0, b""  # not listening yet


def _metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _wait(predicate: Any, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.2)  # polling an observable condition, not guessing a delay


def test_metrics_probes_jsonl_and_events_topic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Counts move on /metrics, probes answer, and the same events reach file and topic."""
    with any_broker() as bootstrap:
        topics = Topics.fresh(bootstrap, 2)
        events_topic = f"events-{topics.group}"
        create_topics(bootstrap, [events_topic])
        port = free_port()
        jsonl = tmp_path / "events.jsonl"
        log = tmp_path / "worker.log"
        worker = start_worker(
            worker_command(
                bootstrap,
                topics,
                BUNDLE,
                "--metrics-port",
                str(port),
                "--monitor-jsonl",
                str(jsonl),
                "--events-topic",
                events_topic,
                "--drift-window-s",
                "1",
            ),
            log,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait(lambda: _get(f"{base}/readyz")[0] == 200)
            status, body = _get(f"{base}/healthz")
            assert status == 200 and json.loads(body)["ok"] is True
            first = _metric(_get(f"{base}/metrics")[1].decode(), "scm_messages_total")
            valid = valid_messages(500, seed=9)
            produce(bootstrap, topics.input, [(k, v) for k, v, _ in valid])
            produce(bootstrap, topics.input, [(b"x", b"not json")])
            read_all(bootstrap, topics.results, len(valid))
            _wait(
                lambda: (
                    _metric(_get(f"{base}/metrics")[1].decode(), "scm_messages_total")
                    >= first + 501
                )
            )
            text = _get(f"{base}/metrics")[1].decode()
            assert _metric(text, 'scm_dead_letters_total{code="invalid_json"}') == 1
            assert _metric(text, "scm_results_total") == 500
            assert _metric(text, "scm_batch_size_count") >= 1
        finally:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=20) == 0, log.read_text()[-2000:]
        lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
        names = {line["event"] for line in lines}
        assert "fault-bottom-trigger" in names and "fallback-routing" in names
        assert all(line["bundle_id"] for line in lines)
        on_topic = read_all(bootstrap, events_topic, len(lines))
        assert len(on_topic) == len(lines)
        capsys.readouterr()
        assert (
            main(
                [
                    "events",
                    "tail",
                    "--bootstrap-servers",
                    bootstrap,
                    "--topic",
                    events_topic,
                    "--from-beginning",
                    "--max-events",
                    str(len(lines)),
                    "--idle-exit-s",
                    "20",
                    "--color",
                    "never",
                ]
            )
            == 0
        )
        printed = capsys.readouterr().out.splitlines()
        assert len(printed) == len(lines)
        assert any("fault-bottom-trigger" in line for line in printed)


def test_healthz_fails_while_the_loop_is_blocked(tmp_path: Path) -> None:
    """A hung inference call blocks the loop: /healthz says 503, and 200 once it moves again."""
    from worker.app import build_worker
    from worker.config import build_config

    with any_broker() as bootstrap:
        topics = Topics.fresh(bootstrap, 1)
        port = free_port()
        config = build_config(
            {
                "bundle": BUNDLE,
                "bootstrap_servers": bootstrap,
                "group_id": topics.group,
                "input_topic": topics.input,
                "results_topic": topics.results,
                "solver_topic": topics.solver,
                "dlq_topic": topics.dlq,
                "metrics_port": port,
                "stall_timeout_s": 1.0,
            },
            {},
            {},
        )
        worker = build_worker(config)
        release = threading.Event()
        real_run = worker.runner.run

        def hung_run(arrays: Any) -> Any:
            release.wait(30)  # stands in for an inference call that hangs
            return real_run(arrays)

        worker.runner.run = hung_run  # type: ignore[method-assign]
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{port}"
        try:
            _wait(lambda: _get(f"{base}/readyz")[0] == 200)
            assert _get(f"{base}/healthz")[0] == 200
            produce(bootstrap, topics.input, [(k, v) for k, v, _ in valid_messages(6, seed=4)])
            _wait(lambda: _get(f"{base}/healthz")[0] == 503, timeout_s=30)
            release.set()
            _wait(lambda: _get(f"{base}/healthz")[0] == 200, timeout_s=30)
            assert len(read_all(bootstrap, topics.results, 6)) == 6
        finally:
            release.set()
            stop.set()
            thread.join(timeout=20)
        assert not thread.is_alive()


def test_events_sink_serves_its_delivery_reports() -> None:
    """The events producer is polled as it goes: delivered events leave its queue.

    An unpolled producer keeps every delivered record until its queue limit, then refuses
    all further events; a long-running worker would go quiet on the events topic.
    """
    from confluent_kafka import Producer

    from worker.kafka.clients import PRODUCER_DEFAULTS
    from worker.monitoring.sinks import KafkaEventSink

    with any_broker() as bootstrap:
        topic = f"events-{time.time_ns()}"
        create_topics(bootstrap, [topic])
        producer = Producer({**PRODUCER_DEFAULTS, "bootstrap.servers": bootstrap})
        sink = KafkaEventSink(producer, topic)
        for i in range(500):
            sink.emit({"event": "probe", "i": i})
        assert len(read_all(bootstrap, topic, 500)) == 500  # all acknowledged by the broker
        _wait(lambda: (sink.emit({"event": "probe", "i": -1}), len(producer) <= 1)[1], 30)
        assert sink.dropped == 0
        sink.close()
