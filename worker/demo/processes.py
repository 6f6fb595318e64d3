"""The demo's child processes: started in their own sessions, always stopped, logs kept."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

STOP_TIMEOUT_S = 20.0


@dataclass
class Child:
    """One started service: its command line, log file and process."""

    name: str
    command: list[str]
    log_path: Path
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    returncode: int | None = None


@dataclass
class Children:
    """Every process the demo started; leaving the context stops all of them."""

    log_dir: Path
    started: dict[str, Child] = field(default_factory=dict)

    def start(self, name: str, args: list[str], *, stdout_file: Path | None = None) -> Child:
        """``scm-worker ARGS`` as a child, stderr (the JSON logs) to ``<name>.log``."""
        command = [sys.executable, "-m", "worker", *args]
        log_path = self.log_dir / f"{name}.log"
        log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        out: Any = open(stdout_file, "wb") if stdout_file else subprocess.DEVNULL  # noqa: SIM115
        # A session of its own: a terminal Ctrl-C reaches the demo, which stops the children
        # in order (fleet, then worker, then solver) instead of all at once.
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            command, stdout=out, stderr=log, start_new_session=True
        )
        if stdout_file:
            out.close()
        child = Child(name, command, log_path, process, log)
        self.started[name] = child
        return child

    def running(self, name: str) -> bool:
        """True while the child has not exited."""
        return self.started[name].process.poll() is None

    def stop(self, name: str, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM (graceful: finish, flush, commit), then SIGKILL after ``timeout_s``."""
        child = self.started[name]
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
        try:
            child.returncode = child.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.returncode = child.process.wait()
        child.log.close()
        return child.returncode

    def wait(self, name: str, timeout_s: float) -> int | None:
        """The child's exit code once it exits within ``timeout_s``, else None."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            return self.started[name].process.wait(timeout=timeout_s)
        return None

    def __enter__(self) -> Children:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for name in reversed(list(self.started)):
            self.stop(name)
