"""``scm-worker run --processes N``: N workers in one consumer group, started and stopped as one.

One Python thread bounds a worker at about one core, whatever the machine has. The group
spreads the input topic's partitions over the processes, so N processes use N cores when the
topic has at least N partitions (a process without a partition waits as a standby member).

Each child is a whole worker with its own clients, sinks, metrics server and drift windows;
they share nothing but the group, exactly like N replicas. Only what would collide differs
(``child_config``): the metrics port, the JSONL file, the transactional id. The set lives and
dies together: when one child exits, the others are stopped and the supervisor exits with that
child's code, so an orchestrator sees one failure and restarts one unit. There is no restart
loop of our own to hide a crash-looping worker behind a healthy parent.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.process import BaseProcess
from typing import Any

import structlog

from worker.cli.exit_codes import EXIT_INTERNAL, EXIT_OK
from worker.config import WorkerConfig

log = structlog.get_logger("worker.supervisor")

# A child drains for up to 8 s and then commits and leaves the group; Kubernetes' default
# grace period is 30 s, after which it kills the pod anyway.
STOP_TIMEOUT_S = 25.0
ORPHAN_CHECK_S = 1.0

# What a child process runs: its config, its index, the log level and the supervisor's pid
# in; it exits with its code. A module-level function: the spawn start method pickles it by
# name, and the child imports its module first (the command line's, so imports stay in the
# order the command line has).
Target = Callable[[WorkerConfig, int, str, int], None]


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    return max(1, len(os.sched_getaffinity(0)))


def child_config(config: WorkerConfig, index: int, cores: int) -> WorkerConfig:
    """The config child ``index`` of ``config.processes`` runs: one process, nothing shared.

    * metrics on ``metrics_port + index`` (0 stays 0: each child picks a free port);
    * monitor events in ``<stem>.p<index><suffix>`` next to the configured file, since two
      writers rotating one file would lose lines;
    * with ``--exactly-once``, transactional id ``<id>-p<index>``: two producers with one id
      fence each other;
    * ONNX Runtime threads ``cores // processes`` unless set, so that N sessions do not each
      start one thread per core.
    """
    update: dict[str, object] = {"processes": 1}
    if config.metrics_port:
        update["metrics_port"] = config.metrics_port + index
    if config.monitor_jsonl is not None:
        path = config.monitor_jsonl
        update["monitor_jsonl"] = path.with_name(f"{path.stem}.p{index}{path.suffix}")
    if config.exactly_once:
        base = config.transactional_id or f"scm-worker-{config.group_id}"
        update["transactional_id"] = f"{base}-p{index}"
    if config.inference_threads is None:
        update["inference_threads"] = max(1, cores // config.processes)
    return config.model_copy(update=update)


def overall_exit_code(first: int | None, codes: Sequence[int | None], asked: bool) -> int:
    """The supervisor's exit code from its children's.

    ``first`` is the code of a child that ended on its own (None when the supervisor was
    asked to stop first): its failure is the one to report, and a child that ends cleanly
    without being asked is a failure too. Otherwise the first failure among ``codes``, where
    a child ended by our own SIGTERM before it could install its handler counts as clean.
    A code below 0 is a signal; it becomes 128 + the signal's number, as shells report it.
    """
    if first is not None:
        return _shell_code(first) if first else EXIT_INTERNAL
    for code in codes:
        if code is None or code == 0 or (asked and code == -signal.SIGTERM):
            continue
        return _shell_code(code)
    return EXIT_OK if all(code is not None for code in codes) else EXIT_INTERNAL


def _shell_code(code: int) -> int:
    return 128 - code if code < 0 else code


def supervise(config: WorkerConfig, target: Target, stop: threading.Event, log_level: str) -> int:
    """Run ``config.processes`` children until ``stop`` is set or one of them exits."""
    context = multiprocessing.get_context("spawn")  # no fork: nothing inherited but the config
    cores = usable_cores()
    children = [
        context.Process(
            target=target,
            args=(child_config(config, index, cores), index, log_level, os.getpid()),
            name=f"scm-worker-p{index}",
        )
        for index in range(config.processes)
    ]
    for child in children:
        child.start()
    log.info("supervisor.started", processes=len(children), pids=[c.pid for c in children])
    by_sentinel = {child.sentinel: child for child in children}
    ended: list[Any] = []
    while not stop.is_set() and not ended:
        ended = multiprocessing.connection.wait(list(by_sentinel), timeout=0.5)
    first = by_sentinel[ended[0]] if ended else None
    if first is not None:
        # The sentinel closes as the child's files do, a moment before its status is reaped.
        first.join()
        log.error(
            "supervisor.child_exited",
            process=children.index(first),
            pid=first.pid,
            code=first.exitcode,
        )
    _stop_all(children)
    code = overall_exit_code(
        first.exitcode if first is not None else None,
        [c.exitcode for c in children],
        asked=first is None,
    )
    log.info("supervisor.stopped", code=code, codes=[c.exitcode for c in children])
    return code


def _stop_all(children: Sequence[BaseProcess]) -> None:
    """SIGTERM every running child (each drains and commits), SIGKILL what outlives the wait."""
    for child in children:
        if child.exitcode is None and child.pid is not None:
            os.kill(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
        if child.exitcode is None:
            log.error("supervisor.child_killed", pid=child.pid, waited_s=STOP_TIMEOUT_S)
            child.kill()
            child.join()


def stop_when_orphaned(stop: threading.Event, parent: int) -> threading.Thread:
    """Set ``stop`` once ``parent`` is gone (its children are then re-parented).

    A supervisor killed with SIGKILL cannot stop its children; they notice, drain, commit
    and exit instead of consuming on without anybody to stop them.
    """

    def watch() -> None:
        while not stop.wait(ORPHAN_CHECK_S):
            if os.getppid() != parent:
                log.warning("worker.orphaned", parent=parent)
                stop.set()

    thread = threading.Thread(target=watch, name="orphan-watch", daemon=True)
    thread.start()
    return thread
