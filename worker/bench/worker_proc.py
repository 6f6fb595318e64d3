"""``scm-worker run`` as its own process, everything on, and what the OS says about it."""

from __future__ import annotations

import contextlib
import resource
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from worker.bench.kafka_io import BenchTopics, group
from worker.errors import FatalError

STOP_TIMEOUT_S = 30.0


def worker_command(
    bootstrap: str, bundle: Path, topics: BenchTopics, workdir: Path, *extra: str
) -> list[str]:
    """The command an operator runs, with validation, routing and all monitoring on."""
    return [
        sys.executable,
        "-m",
        "worker",
        "--log-level",
        "info",
        "run",
        "--bundle",
        str(bundle),
        "--bootstrap-servers",
        bootstrap,
        "--group-id",
        group("worker"),
        "--input-topic",
        topics.input,
        "--results-topic",
        topics.results,
        "--solver-topic",
        topics.solver,
        "--dlq-topic",
        topics.dlq,
        "--monitor-jsonl",
        str(workdir / f"{topics.input}.events.jsonl"),
        "--events-topic",
        topics.events,
        "--metrics-port",
        "0",
        *extra,
    ]


def holdings(log_text: str) -> dict[int, set[int]]:
    """The partitions each worker process holds, replayed from its assignment log lines.

    A single worker's lines carry no ``process`` field: it counts as process 0.
    """
    held: dict[int, set[int]] = {}
    for line in log_text.splitlines():
        if not line.startswith("{") or '"worker.partitions_' not in line:
            continue
        entry = orjson.loads(line)
        partitions = {partition for _, partition in entry.get("partitions", [])}
        index = int(entry.get("process", 0))
        if entry["event"] == "worker.partitions_assigned":
            held[index] = partitions  # the loop logs its whole assignment each time
        elif entry["event"] == "worker.partitions_revoked":
            held[index] = held.get(index, set()) - partitions
    return held


def settled(log_text: str, processes: int, partitions: int) -> bool:
    """Every process holds a share, and together they hold every partition once."""
    held = holdings(log_text)
    shares = [held.get(index, set()) for index in range(processes)]
    covered = set().union(*shares)
    return all(shares) and len(covered) == partitions == sum(map(len, shares))


def peak_rss_bytes(pid: int) -> int | None:
    """The process's resident high-water mark (VmHWM) while it runs, on Linux."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


@dataclass
class WorkerProcess:
    """A running worker; ``stop`` sends SIGTERM and checks it exits 0."""

    process: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def peak_rss(self) -> int | None:
        """VmHWM now; after exit, the children's maximum from getrusage (Linux: KiB)."""
        peak = peak_rss_bytes(self.process.pid)
        if peak is None and not self.alive():
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        return peak

    def settled(self, processes: int, partitions: int) -> bool:
        """The group has given every process its share (see ``settled``)."""
        return settled(self.log.read_text(errors="replace"), processes, partitions)

    def tail(self, chars: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise FatalError(f"bench: the worker did not stop on SIGTERM: {self.tail()}") from None
        if code != 0:
            raise FatalError(f"bench: the worker exited {code}: {self.tail()}")


@contextlib.contextmanager
def running_worker(command: list[str], log: Path) -> Iterator[WorkerProcess]:
    """Start the worker; always stop it, and fail loudly if it did not exit cleanly."""
    with log.open("ab") as handle:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    worker = WorkerProcess(process, log)
    try:
        yield worker
    except BaseException:
        if worker.alive():
            worker.process.kill()
            worker.process.wait()
        raise
    worker.stop()
