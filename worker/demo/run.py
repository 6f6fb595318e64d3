"""The demo: broker, topics, worker, solver and fleet on one machine, watched live.

Orchestration only. Every figure the summary prints comes from an independent reader of the
topics (``TopicReader``), never from what the services say about themselves.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import orjson

from worker.cli.exit_codes import EXIT_INTERNAL, EXIT_INVALID, EXIT_OK
from worker.demo.processes import Children
from worker.demo.reader import TopicReader
from worker.demo.report import write_report
from worker.demo.tally import Tally
from worker.demo.view import live_lines, summary_lines
from worker.errors import FatalError
from worker.kafka.embedded import EmbeddedBroker, create_topics, free_port

GROUP = "scm-demo-worker"
READY_TIMEOUT_S = 60.0
REDRAW_S = 0.5
PLAIN_PROGRESS_S = 5.0
FLEET_SUMMARY = "fleet.json"  # what the fleet prints on exit: sent and acknowledged


@dataclass(frozen=True, slots=True)
class DemoSettings:
    """What ``scm-worker demo`` was asked to do."""

    bundle: Path
    out: Path
    duration_s: float = 30.0
    rate: float = 2000.0
    devices: int = 20
    seed: int = 7
    bootstrap: str | None = None
    live: bool | None = None  # None: when stdout is a terminal
    drift_window_s: float = 5.0
    drift_threshold: float = 0.4
    settle_timeout_s: float = 60.0


def topic_names(suffix: str) -> dict[str, str]:
    """Topic per role; a suffix keeps runs apart on a shared broker."""
    base = {
        "features": "features",
        "results": "results",
        "solver_requests": "solver-requests",
        "solver_answers": "solver-answers",
        "dead_letters": "dead-letters",
        "events": "scm-events",
    }
    return {role: f"{name}{suffix}" for role, name in base.items()}


def service_commands(
    settings: DemoSettings, bootstrap: str, topics: dict[str, str], metrics_port: int
) -> dict[str, list[str]]:
    """The exact ``scm-worker`` command lines the demo runs (the report repeats them)."""
    kafka = ["--bootstrap-servers", bootstrap]
    return {
        "worker": [
            "--log-level", "info", "run", "--bundle", str(settings.bundle), *kafka,
            "--group-id", GROUP,
            "--input-topic", topics["features"],
            "--results-topic", topics["results"],
            "--solver-topic", topics["solver_requests"],
            "--dlq-topic", topics["dead_letters"],
            "--events-topic", topics["events"],
            "--monitor-jsonl", str(settings.out / "events.jsonl"),
            "--metrics-port", str(metrics_port),
            "--drift-window-s", str(settings.drift_window_s),
            "--drift-threshold", str(settings.drift_threshold),
        ],
        "solver": [
            "--log-level", "info", "solver", *kafka,
            "--group-id", "scm-demo-solver",
            "--requests-topic", topics["solver_requests"],
            "--answers-topic", topics["solver_answers"],
        ],
        "fleet": [
            "--log-level", "info", "fleet", *kafka,
            "--topic", topics["features"],
            "--devices", str(settings.devices),
            "--rate", str(settings.rate),
            "--duration", str(settings.duration_s),
            "--seed", str(settings.seed),
            "--degrade-after", str(settings.duration_s / 2),
        ],
    }  # fmt: skip


def wait_ready(port: int, children: Children, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Until the worker's /readyz says it holds partitions (or it died, or time ran out)."""
    deadline = time.monotonic() + timeout_s
    url = f"http://127.0.0.1:{port}/readyz"
    while time.monotonic() < deadline:
        if not children.running("worker"):
            raise FatalError(
                f"demo: expected the worker to start, found it exited; see "
                f"{children.started['worker'].log_path}"
            )
        # /readyz answers 503 (an HTTPError) until partitions are assigned.
        with (
            contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
            urllib.request.urlopen(url, timeout=1) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.1)  # polling readiness, not guessing a delay
    raise FatalError(f"demo: expected the worker ready within {timeout_s:.0f} s, found it not")


class Screen:
    """Redraws a block in place on a terminal; prints a line now and then elsewhere."""

    def __init__(self, stream: TextIO, live: bool) -> None:
        self.stream, self.live = stream, live
        self.height = 0
        self.last_drawn = self.last_plain = 0.0

    def show(self, lines: list[str]) -> None:
        """Draw ``lines`` unless the screen was drawn less than REDRAW_S ago."""
        now = time.monotonic()
        if now - self.last_drawn < REDRAW_S:
            return
        self.last_drawn = now
        if self.live:
            if self.height:
                self.stream.write(f"\x1b[{self.height}F\x1b[J")
            self.stream.write("\n".join(lines) + "\n")
            self.height = len(lines)
        elif now - self.last_plain >= PLAIN_PROGRESS_S:
            self.last_plain = now
            self.stream.write(" | ".join(line.strip() for line in lines[:3]) + "\n")
        self.stream.flush()


def run_demo(settings: DemoSettings, stream: TextIO = sys.stdout) -> int:
    """Run everything, watch it, stop it, tie it out: 0 when every promise holds, 1 when one
    does not, 70 when interrupted (Ctrl-C or SIGTERM), after stopping every process it started."""
    _interrupt_on_signals()
    settings.out.mkdir(parents=True, exist_ok=True)
    screen = Screen(stream, stream.isatty() if settings.live is None else settings.live)
    tally = Tally()
    started = time.monotonic()
    interrupted = False
    with contextlib.ExitStack() as stack:
        bootstrap = settings.bootstrap
        suffix = f"-{uuid.uuid4().hex[:6]}" if bootstrap else ""
        if bootstrap is None:
            broker = EmbeddedBroker(log_path=settings.out / "broker.log")
            bootstrap = stack.enter_context(broker).bootstrap_servers
        topics = topic_names(suffix)
        create_topics(bootstrap, [topics["features"]], partitions=3)
        create_topics(bootstrap, [t for r, t in topics.items() if r != "features"])
        metrics_port = free_port()
        commands = service_commands(settings, bootstrap, topics, metrics_port)
        children = stack.enter_context(Children(settings.out))
        reader = TopicReader(bootstrap, topics)
        stack.callback(reader.close)
        fleet_out = settings.out / FLEET_SUMMARY
        try:
            children.start("solver", commands["solver"])
            children.start("worker", commands["worker"])
            wait_ready(metrics_port, children)
            children.start("fleet", commands["fleet"], stdout_file=fleet_out)
            _watch(settings, children, reader, tally, screen)
            exit_codes = {name: children.stop(name) for name in ("fleet", "worker", "solver")}
            while reader.read(tally, 1.0):
                pass
            committed = reader.committed(GROUP, topics["features"])
        except KeyboardInterrupt:
            interrupted = True
            stream.write("\ninterrupted: stopping every process the demo started\n")
            exit_codes = {name: children.stop(name) for name in reversed(children.started)}
            committed = -1
    elapsed = time.monotonic() - started
    summary = tally.summary()
    summary["elapsed_s"] = round(elapsed, 3)
    summary["exit_codes"] = exit_codes
    summary["committed_input_offsets"] = committed
    summary["fleet"] = _read_json(fleet_out)
    summary["commands"] = {
        name: ["scm-worker", *child.command[3:]] for name, child in children.started.items()
    }
    summary["pids"] = {name: child.process.pid for name, child in children.started.items()}
    summary["interrupted"] = interrupted
    ok = all(summary["ties_out"].values()) and not interrupted
    summary["ok"] = ok
    (settings.out / "summary.json").write_bytes(
        orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    )
    write_report(settings.out / "report.md", summary)
    stream.write("\n".join(summary_lines(summary, elapsed)) + "\n")
    stream.write(f"  wrote {settings.out}/summary.json, report.md, events.jsonl and logs\n")
    if interrupted:
        return EXIT_INTERNAL
    return EXIT_OK if ok else EXIT_INVALID


def _watch(
    settings: DemoSettings,
    children: Children,
    reader: TopicReader,
    tally: Tally,
    screen: Screen,
) -> None:
    """Redraw while the fleet publishes, then until the outputs tie out (or time runs out)."""
    window: list[tuple[float, int]] = []
    settle_deadline: float | None = None
    while True:
        reader.read(tally, 0.2)
        now = time.monotonic()
        window = [(t, n) for t, n in window if now - t <= 2.0] + [(now, tally.counts["results"])]
        rate = (window[-1][1] - window[0][1]) / max(window[-1][0] - window[0][0], 1e-9)
        # The fleet's clock starts with its first message (as stamped), not at its launch.
        elapsed = time.time() - tally.first_ts if tally.first_ts is not None else 0.0
        screen.show(live_lines(tally, elapsed, rate, settings.duration_s))
        if children.running("fleet"):
            continue
        if tally.published is None:
            fleet = _read_json(settings.out / FLEET_SUMMARY)
            tally.published = fleet["acked"] if isinstance(fleet, dict) else -1
            settle_deadline = now + settings.settle_timeout_s
        if all(tally.ties_out().values()) or not children.running("worker"):
            return
        if settle_deadline is not None and now > settle_deadline:
            return


def _interrupt_on_signals() -> None:
    """Ctrl-C and SIGTERM both mean "stop everything you started", whoever started us.

    Python leaves SIGINT ignored when the parent ignored it (a job started with ``&`` from a
    script), and SIGTERM would kill the demo without stopping its children, which run in
    sessions of their own. Either way they would be orphaned.
    """

    def interrupt(signum: int, _: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def _read_json(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
