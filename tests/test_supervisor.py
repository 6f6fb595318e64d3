"""``scm-worker run --processes N``: the children's configs, the exit code, and the real thing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tests.conftest import FIXTURES
from tests.fault_support import message_id, read_covering
from tests.kafka_support import (
    Topics,
    any_broker,
    committed,
    produce,
    read_all,
    start_worker,
    worker_command,
)
from tests.test_kafka_worker import valid_messages
from worker.cli.supervisor import child_config, overall_exit_code
from worker.config import WorkerConfig

BUNDLE = FIXTURES / "v061_reference_robotics_seed7" / "bundle"


def config(**values: Any) -> WorkerConfig:
    base: dict[str, Any] = {
        "bundle": BUNDLE,
        "bootstrap_servers": "127.0.0.1:9092",
        "group_id": "g",
        "input_topic": "in",
        "results_topic": "out",
        "solver_topic": "solver",
        "dlq_topic": "dlq",
    }
    return WorkerConfig(**{**base, **values})


class TestChildConfig:
    """What would collide between replicas differs; everything else is the operator's."""

    def test_ports_files_and_transactional_ids_differ(self, tmp_path: Path) -> None:
        parent = config(
            processes=3,
            metrics_port=9100,
            monitor_jsonl=tmp_path / "events.jsonl",
            exactly_once=True,
            kafka_config={"sasl.password": "s3cret"},
        )
        children = [child_config(parent, i, cores=6) for i in range(3)]
        assert [c.metrics_port for c in children] == [9100, 9101, 9102]
        assert [c.monitor_jsonl for c in children] == [
            tmp_path / "events.p0.jsonl",
            tmp_path / "events.p1.jsonl",
            tmp_path / "events.p2.jsonl",
        ]
        assert [c.transactional_id for c in children] == [
            "scm-worker-g-p0",
            "scm-worker-g-p1",
            "scm-worker-g-p2",
        ]
        assert {c.processes for c in children} == {1}
        assert {c.inference_threads for c in children} == {2}  # 6 cores over 3 processes
        assert children[0].kafka_overrides() == {"sasl.password": "s3cret"}
        assert children[0].group_id == parent.group_id  # one group: that is the point

    def test_explicit_choices_and_absent_features_stay(self) -> None:
        parent = config(
            processes=4, metrics_port=0, inference_threads=3, transactional_id="tx", max_batch=64
        )
        child = child_config(parent, 2, cores=2)
        assert child.metrics_port == 0  # each child picks a free port
        assert child.inference_threads == 3
        assert child.transactional_id == "tx"  # no transactions: not touched
        assert child.monitor_jsonl is None
        assert child.max_batch == 64
        assert child_config(config(processes=4), 0, cores=2).inference_threads == 1

    def test_ports_must_fit(self) -> None:
        with pytest.raises(ValidationError, match="room for 4 ports"):
            config(processes=4, metrics_port=65533)
        assert config(processes=4, metrics_port=65532).metrics_port == 65532


class TestExitCode:
    """The first child to end on its own speaks for the set; a clean stop is 0."""

    def test_asked_to_stop(self) -> None:
        assert overall_exit_code(None, [0, 0], asked=True) == 0
        # SIGTERMed before it installed its handler (still importing): nothing to lose
        assert overall_exit_code(None, [0, -signal.SIGTERM], asked=True) == 0
        assert overall_exit_code(None, [0, 3], asked=True) == 3
        assert overall_exit_code(None, [-signal.SIGKILL, 0], asked=True) == 137

    def test_a_child_ended_first(self) -> None:
        assert overall_exit_code(3, [3, 0], asked=False) == 3
        assert overall_exit_code(-signal.SIGKILL, [-9, 0], asked=False) == 137
        # ending cleanly unasked is still a failure of the set
        assert overall_exit_code(0, [0, 0], asked=False) == 70


@pytest.fixture(scope="module", name="bootstrap")
def _bootstrap() -> Iterator[str]:
    with any_broker() as servers:
        yield servers


def log_lines(log: Path, event: str) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in log.read_text(errors="replace").splitlines()
        if line.startswith("{") and f'"{event}"' in line
    ]


def wait_for(log: Path, worker: subprocess.Popen[bytes], ready: Any, what: str) -> None:
    deadline = time.monotonic() + 90
    while not ready():
        assert worker.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"expected {what}: {log.read_text()[-3000:]}"
        time.sleep(0.1)  # polling the log, not guessing a delay


def two_children(
    bootstrap: str, tmp_path: Path, assigned: int
) -> tuple[Topics, Path, subprocess.Popen[bytes]]:
    """``run --processes 2`` on two partitions, once ``assigned`` children hold partitions."""
    topics = Topics.fresh(bootstrap, 2)
    log = tmp_path / "w.log"
    worker = start_worker(worker_command(bootstrap, topics, BUNDLE, "--processes", "2"), log)
    try:
        wait_for(
            log,
            worker,
            lambda: len(log_lines(log, "worker.partitions_assigned")) >= assigned,
            f"{assigned} children in the group",
        )
    except BaseException:
        worker.kill()
        raise
    return topics, log, worker


def gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie not yet reaped counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in {"Z", "X"}


@pytest.mark.kafka
class TestProcesses:
    """Real children, a real broker, and what an independent consumer sees."""

    def test_two_processes_share_the_group(self, bootstrap: str, tmp_path: Path) -> None:
        """Each child holds partitions and works; every message gets a result; SIGTERM stops
        both, commits reach the end; each child wrote its own monitor file."""
        partitions = 4
        topics = Topics.fresh(bootstrap, partitions)
        events = tmp_path / "events.jsonl"
        command = worker_command(
            bootstrap,
            topics,
            BUNDLE,
            "--processes",
            "2",
            "--monitor-jsonl",
            str(events),
            "--metrics-port",
            "0",
            "--max-batch",
            "16",
        )
        log = tmp_path / "w.log"
        worker = start_worker(command, log)
        try:

            def both_assigned() -> bool:
                held: dict[int, set[int]] = {0: set(), 1: set()}
                for line in log_lines(log, "worker.partitions_assigned"):
                    held[line["process"]] = {p for _, p in line["partitions"]}
                return all(held.values()) and len(held[0] | held[1]) == partitions

            wait_for(log, worker, both_assigned, "both children holding partitions")
            valid = valid_messages(2_000, seed=21)
            produce(bootstrap, topics.input, [(k, v) for k, v, _ in valid])
            wanted = {m["message_id"] for _, _, m in valid}
            results = read_covering(bootstrap, topics.results, wanted, message_id, 120)
        finally:
            worker.send_signal(signal.SIGTERM)
            code = worker.wait(timeout=40)
        assert code == 0, log.read_text()[-3000:]
        assert {json.loads(m.value())["message_id"] for m in results} == wanted
        stopped = {line["process"]: line for line in log_lines(log, "worker.stopped")}
        assert sorted(stopped) == [0, 1]
        assert all(line["consumed"] > 0 for line in stopped.values()), stopped
        assert sum(line["results"] for line in stopped.values()) >= len(valid)
        positions = committed(bootstrap, topics.group, topics.input, partitions)
        ends = _end_offsets(bootstrap, topics.input, partitions, len(valid))
        assert positions == ends
        for index in (0, 1):
            lines = (tmp_path / f"events.p{index}.jsonl").read_text().splitlines()
            assert lines and all(json.loads(line)["event"] for line in lines)
        assert not events.exists()
        listening = log_lines(log, "worker.metrics_listening")
        assert len({line["port"] for line in listening}) == 2

    def test_a_dead_child_stops_the_set(self, bootstrap: str, tmp_path: Path) -> None:
        """SIGKILL one child: the other drains and exits, the supervisor exits 128 + 9."""
        _, log, worker = two_children(bootstrap, tmp_path, assigned=1)
        try:
            pids = log_lines(log, "supervisor.started")[0]["pids"]
            os.kill(pids[1], signal.SIGKILL)
            code = worker.wait(timeout=40)
        finally:
            if worker.poll() is None:
                worker.kill()
        assert code == 128 + signal.SIGKILL, log.read_text()[-3000:]
        (exited,) = log_lines(log, "supervisor.child_exited")
        assert exited["pid"] == pids[1] and exited["code"] == -signal.SIGKILL
        assert [line["process"] for line in log_lines(log, "worker.stopped")] == [0]
        assert all(gone(pid) for pid in pids)

    def test_orphans_stop_by_themselves(self, bootstrap: str, tmp_path: Path) -> None:
        """A supervisor killed with SIGKILL cannot stop its children: they stop, and commit."""
        topics, log, worker = two_children(bootstrap, tmp_path, assigned=2)
        try:
            valid = valid_messages(300, seed=22)
            produce(bootstrap, topics.input, [(k, v) for k, v, _ in valid])
            wanted = {m["message_id"] for _, _, m in valid}
            read_covering(bootstrap, topics.results, wanted, message_id, 60)
            pids = log_lines(log, "supervisor.started")[0]["pids"]
        finally:
            worker.kill()
            worker.wait(timeout=10)
        deadline = time.monotonic() + 40
        while not all(gone(pid) for pid in pids):
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)  # polling /proc, not guessing a delay
        assert len(log_lines(log, "worker.orphaned")) == 2
        assert committed(bootstrap, topics.group, topics.input, 2) == _end_offsets(
            bootstrap, topics.input, 2, len(valid)
        )

    def test_bad_bundle_is_one_line_and_no_children(self, tmp_path: Path) -> None:
        topics = Topics("in", "out", "solver", "dlq", f"g-{uuid.uuid4().hex[:6]}")
        command = worker_command(
            "127.0.0.1:1",
            topics,
            FIXTURES / "v051_legacy_v1_scalar" / "bundle",
            "--processes",
            "2",
        )
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 3
        lines = done.stderr.strip().splitlines()
        assert [line for line in lines if line.startswith("scm-worker: error:")] == [lines[-1]]
        assert "supervisor.started" not in done.stderr


def _end_offsets(bootstrap: str, topic: str, partitions: int, total: int) -> dict[int, int]:
    """End offsets counted by consuming (the embedded broker's watermarks are approximate)."""
    ends = dict.fromkeys(range(partitions), 0)
    for message in read_all(bootstrap, topic, total):
        ends[message.partition()] = max(ends[message.partition()], message.offset() + 1)
    return ends
