"""Main-thread instructions per message of the worker's hot path, counted by callgrind.

CPU time per message on a shared two-core virtual machine moves by +-25 % between identical
runs, too much to see a 5 % change; instruction counts do not move. This runs the real
``Worker._handle`` (everything on: validation, routing, solver requests, JSONL and Kafka
events, metrics, offset tracking) on 512-message batches of records consumed from the
embedded broker, and serves every delivery report, under valgrind twice: with 0 and with 20
measured batches after the same warm-up. The difference, divided by the messages, is the
figure. Needs valgrind (not a dependency; a dev tool like py-spy). About 7 minutes:

    .venv/bin/python tools/hot_path_instructions.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

BATCH = 512
MEASURED = 20
WARM_UP = 3


def _handle_batches(rounds: int) -> None:
    """The measured process: consume once, then hand the same records to _handle."""
    from worker.app import build_worker, settle_gc
    from worker.bench.kafka_io import BenchTopics, fill, reader
    from worker.bench.messages import feature_messages
    from worker.cli.demo_cmd import default_bundle_path
    from worker.config import WorkerConfig
    from worker.kafka.embedded import EmbeddedBroker

    kept = 10
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        bootstrap = broker.bootstrap_servers
        topics = BenchTopics.fresh(bootstrap, "instructions")
        fill(bootstrap, topics.input, feature_messages(BATCH * kept, ts=1.7e9))
        source = reader(bootstrap, "instructions")
        source.subscribe([topics.input])
        records = []
        while len(records) < BATCH * kept:
            records += [m for m in source.consume(10_000, 1.0) if m.error() is None]
        records.sort(key=lambda m: (m.partition(), m.offset()))
        batches = [records[i * BATCH : (i + 1) * BATCH] for i in range(kept)]
        config = WorkerConfig(
            bundle=default_bundle_path(),
            bootstrap_servers=bootstrap,
            group_id="instructions",
            input_topic=topics.input,
            results_topic=topics.results,
            solver_topic=topics.solver,
            dlq_topic=topics.dlq,
            monitor_jsonl=Path(tmp) / "events.jsonl",
            events_topic=topics.events,
            metrics_port=0,
        )
        worker = build_worker(config)
        settle_gc()  # as scm-worker run does
        for k in range(WARM_UP + rounds):
            worker._handle(batches[k % kept])
            worker.producer.flush(60)  # every delivery report, on the main thread
            worker.tracker.ready()
        source.close()


def _main_thread_instructions(rounds: int, out: Path) -> int:
    env = {**os.environ, "PYTHONHASHSEED": "0", "HOT_PATH_ROUNDS": str(rounds)}
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--separate-threads=yes",
            f"--callgrind-out-file={out}",
            sys.executable,
            __file__,
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    summary = Path(f"{out}-01").read_text(errors="replace")
    found = re.search(r"^summary:\s*(\d+)", summary, re.MULTILINE)
    if found is None:
        raise SystemExit(f"expected a callgrind summary in {out}-01, found none")
    return int(found.group(1))


def main() -> None:
    if "HOT_PATH_ROUNDS" in os.environ:
        _handle_batches(int(os.environ["HOT_PATH_ROUNDS"]))
        return
    with tempfile.TemporaryDirectory(prefix="callgrind-") as tmp:
        idle = _main_thread_instructions(0, Path(tmp) / "idle")
        busy = _main_thread_instructions(MEASURED, Path(tmp) / "busy")
    per_message = (busy - idle) / (MEASURED * BATCH)
    print(f"{per_message:,.0f} main-thread instructions per message")


if __name__ == "__main__":
    main()
