"""`make demo` in a short mode: everything starts, ties out, writes its files and stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

pytestmark = pytest.mark.kafka


def demo(out: Path, *extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "worker", "demo", "--out", str(out), "--no-live", *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def assert_all_stopped(pids: dict[str, int]) -> None:
    for name, pid in pids.items():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # gone, not even a zombie: the demo reaped it
        assert name in {"worker", "solver", "fleet"}


def test_short_demo_ties_out(tmp_path: Path) -> None:
    """The same command as `make demo`, shorter: exit 0 and a summary that ties out."""
    with demo(tmp_path, "--duration", "5", "--rate", "600") as process:
        try:
            stdout, stderr = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, stdout + stderr[-3000:]
    summary = orjson.loads((tmp_path / "summary.json").read_bytes())
    counts = summary["counts"]
    assert summary["ok"] and all(summary["ties_out"].values()), summary["ties_out"]
    assert counts["features"] == summary["fleet"]["acked"] == summary["fleet"]["sent"] > 2000
    assert counts["features"] == counts["results"] + counts["dead_letters"]
    assert counts["solver_requests"] == counts["solver_answers"] > 0
    assert counts["dead_letters"] == summary["fleet"].get("malformed", 0) > 0
    assert summary["routes"]["solver"] == counts["solver_requests"]
    assert summary["provenance"]["fault"] > 0 and summary["provenance"]["semantic"] > 0
    assert summary["leaked_bottoms"] == 0
    assert summary["committed_input_offsets"] == counts["features"]
    assert summary["exit_codes"] == {"fleet": 0, "worker": 0, "solver": 0}
    assert_all_stopped(summary["pids"])
    events = (tmp_path / "events.jsonl").read_text().splitlines()
    assert events and all(orjson.loads(line)["event"] for line in events)
    assert "ties out" in (tmp_path / "report.md").read_text()
    assert "ties out:" in stdout and "FAIL" not in stdout
    assert "Connection refused" not in stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_stops_everything(tmp_path: Path, signum: signal.Signals) -> None:
    """Ctrl-C or SIGTERM mid-run: every child is stopped, the partial summary is written,
    exit 70. The demo starts with SIGINT ignored, as a job started with `&` from a script
    does: it must still honour it."""
    command = [sys.executable, "-m", "worker", "demo", "--out", str(tmp_path), "--no-live"]
    command += ["--duration", "60", "--rate", "200"]
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    ) as process:
        try:
            deadline = time.monotonic() + 60
            fleet_log = tmp_path / "fleet.log"
            while not (fleet_log.exists() and b"fleet.started" in fleet_log.read_bytes()):
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)  # polling the fleet's log for its start, not guessing a delay
            process.send_signal(signum)
            stdout, _ = process.communicate(timeout=90)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 70, stdout
    summary = orjson.loads((tmp_path / "summary.json").read_bytes())
    assert summary["interrupted"] and not summary["ok"]
    assert set(summary["pids"]) == {"worker", "solver", "fleet"}
    assert_all_stopped(summary["pids"])
    assert "interrupted" in stdout
