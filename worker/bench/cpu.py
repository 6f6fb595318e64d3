"""Cores each process used during a phase, from /proc: who had the machine's CPU.

On two cores the worker shares the machine with the broker and with the bench's own clients,
so a rate or a latency means little without this split. Linux only; elsewhere it is empty.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat`` from field 3 on (state, ppid, ...), or None if it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; the fields after it do not.
    return stat[stat.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU of every thread of ``pid`` so far, or None if it cannot be read."""
    fields = _stat_fields(pid)
    return None if fields is None else (int(fields[11]) + int(fields[12])) / _TICKS_PER_S


def process_tree(pid: int, stop_at: frozenset[int] = frozenset()) -> list[int]:
    """``pid`` and its descendants now (``run --processes`` children), parents first; the
    subtrees of ``stop_at`` (processes counted on their own) are left out."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop(0)
        tree.append(current)
        todo.extend(sorted(set(parents.get(current, [])) - stop_at))
    return tree


def tree_cpu_seconds(pids: list[int]) -> float | None:
    """CPU of ``pids`` together; None if none of them can be read."""
    found = [seconds for pid in pids if (seconds := cpu_seconds(pid)) is not None]
    return sum(found) if found else None


@dataclass
class CpuMeter:
    """Started once, read once: cores used per role (``{"worker": pid, ...}``) in between.

    A role's figure covers the process and the descendants it has at ``start`` (the children
    of ``run --processes``), except other roles' processes: the bench's own children include
    the worker and the embedded broker.
    """

    pids: dict[str, int]
    _started: float | None = None
    _before: dict[str, float] = field(default_factory=dict)
    _trees: dict[str, list[int]] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self._started is not None

    def start(self) -> None:
        self._started = time.monotonic()
        roots = frozenset(self.pids.values())
        self._trees = {role: process_tree(pid, roots - {pid}) for role, pid in self.pids.items()}
        self._before = {
            role: seconds
            for role, tree in self._trees.items()
            if (seconds := tree_cpu_seconds(tree)) is not None
        }

    def cores(self) -> dict[str, float]:
        """Cores per role since ``start`` (CPU seconds over wall seconds); {} before it."""
        if self._started is None:
            return {}
        elapsed = time.monotonic() - self._started
        out: dict[str, float] = {}
        for role, before in self._before.items():
            now = tree_cpu_seconds(self._trees[role])
            if now is not None and elapsed > 0:
                out[role] = round((now - before) / elapsed, 2)
        return out
