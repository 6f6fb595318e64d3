"""Hot reload: watch the policy file by content hash; prepare the new policy off the loop.

The watcher thread reads, validates, verifies and warms up a changed policy; the loop swaps it
in between batches (never mid-batch). A missing, unreadable or invalid policy, or a bundle that
fails verification, is reported once per distinct content and the running policy stays.
"""

from __future__ import annotations

import threading
from pathlib import Path

import structlog

from worker.calibration.stage import DirectionSettings
from worker.errors import WorkerError
from worker.policy.check import LoadedPolicy, load_policy
from worker.policy.model import parse_policy, policy_digest

log = structlog.get_logger("worker.policy")


class PolicyWatcher:
    """Polls ``path`` every ``poll_s`` seconds; hands over a ready policy or a failure."""

    def __init__(
        self,
        path: Path,
        current_digest: str,
        poll_s: float = 1.0,
        fallback_direction: DirectionSettings | None = None,
        inference_threads: int | None = None,
    ) -> None:
        self.path = path
        self.fallback_direction = fallback_direction
        self.inference_threads = inference_threads
        self.poll_s = poll_s
        self._seen = current_digest
        self._lock = threading.Lock()
        self._ready: LoadedPolicy | None = None
        self._failure: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="policy-watch", daemon=True)
        self._thread.start()

    def take(self) -> tuple[LoadedPolicy | None, str | None]:
        """A policy ready to swap in, and/or a failure to report; each handed over once."""
        with self._lock:
            ready, failure = self._ready, self._failure
            self._ready = self._failure = None
        return ready, failure

    def stop(self) -> None:
        """End the thread."""
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.check_once()

    def check_once(self) -> None:
        """Read the file once; prepare it if its content changed."""
        try:
            raw = self.path.read_bytes()
            digest = policy_digest(raw)
        except OSError as exc:
            self._report(f"missing:{exc.errno}", f"{self.path}: unreadable: {exc}")
            return
        if digest == self._seen:
            return
        self._seen = digest
        try:
            loaded = load_policy(
                parse_policy(raw, str(self.path)),
                digest,
                self.path,
                self.fallback_direction,
                self.inference_threads,
            )
        except (WorkerError, ValueError, OSError) as exc:
            with self._lock:
                self._failure = str(exc)
            return
        with self._lock:
            self._ready = loaded
            self._failure = None

    def _report(self, state: str, reason: str) -> None:
        if state != self._seen:
            self._seen = state
            with self._lock:
                self._failure = reason
