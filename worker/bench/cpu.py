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


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU of every thread of ``pid`` so far, or None if it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; the fields after it do not.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S


@dataclass
class CpuMeter:
    """Started once, read once: cores used per role (``{"worker": pid, ...}``) in between."""

    pids: dict[str, int]
    _started: float | None = None
    _before: dict[str, float] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self._started is not None

    def start(self) -> None:
        self._started = time.monotonic()
        self._before = {
            role: seconds
            for role, pid in self.pids.items()
            if (seconds := cpu_seconds(pid)) is not None
        }

    def cores(self) -> dict[str, float]:
        """Cores per role since ``start`` (CPU seconds over wall seconds); {} before it."""
        if self._started is None:
            return {}
        elapsed = time.monotonic() - self._started
        out: dict[str, float] = {}
        for role, before in self._before.items():
            now = cpu_seconds(self.pids[role])
            if now is not None and elapsed > 0:
                out[role] = round((now - before) / elapsed, 2)
        return out
