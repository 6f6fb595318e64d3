"""A progress bar on stderr: redrawn in place on a terminal, a line per phase otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 28
REDRAW_S = 0.1


class Progress:
    """One bar per phase; ``update`` is cheap enough to call from a busy loop."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty()
        self.label = ""
        self.total = 1
        self.started = 0.0
        self._drawn = 0.0

    def start(self, label: str, total: int) -> None:
        """Begin a phase of ``total`` units."""
        self.label, self.total, self.started = label, max(total, 1), time.monotonic()
        self._drawn = 0.0
        if self.enabled and not self.tty:
            print(f"bench: {label} ...", file=self.stream, flush=True)
        self.update(0)

    def update(self, done: int) -> None:
        """Redraw at most every REDRAW_S on a terminal; silent otherwise."""
        if not self.tty:
            return
        now = time.monotonic()
        if now - self._drawn < REDRAW_S and done < self.total:
            return
        self._drawn = now
        share = min(done / self.total, 1.0)
        bar = "#" * int(share * WIDTH)
        self.stream.write(
            f"\r{self.label:<22} [{bar:<{WIDTH}}] {share:4.0%} {now - self.started:6.1f} s"
        )
        self.stream.flush()

    def finish(self, summary: str) -> None:
        """End the phase with a one-line summary."""
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.started
        if self.tty:
            self.stream.write("\r\033[K")
        print(f"bench: {self.label}: {summary} ({elapsed:.1f} s)", file=self.stream, flush=True)
