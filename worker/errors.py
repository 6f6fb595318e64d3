"""The one exception tree of scm-worker.

::

    WorkerError
    ├── PoisonInputError          one message or input is bad; dead-letter it, carry on
    │   └── InputMismatchError    arrays that do not fit the bundle's inputs
    ├── TransientError            the world is briefly unwell; retry with backoff
    └── FatalError                the worker cannot run as configured; exit with one line
        ├── ConfigError           a bad flag, environment variable or config file
        └── BundleError           a bundle that cannot be trusted or run
            ├── BundleInvalidError       the manifest or a file breaks the contract
            ├── BundleIntegrityError     sizes, hashes or the pinned digest disagree
            ├── UnverifiedBundleError    a schema-v1 bundle without --allow-unverified-legacy
            └── ModelLoadError           ONNX Runtime refused the verified bytes

Third-party errors (json, onnx, onnxruntime) are translated where they are raised and chained
with ``from exc``. Every message names the file, the field, what was expected and what was
found, so an operator can act on one log line.
"""

from __future__ import annotations

from typing import Any


class WorkerError(Exception):
    """Root of every error scm-worker raises on purpose."""


class PoisonInputError(WorkerError):
    """Raised when one input cannot be processed; the right answer is a dead letter."""


class InputMismatchError(PoisonInputError):
    """Raised when input arrays do not match the bundle's declared inputs."""


class TransientError(WorkerError):
    """Raised when an operation may succeed if retried later."""


class FatalError(WorkerError):
    """Raised when the worker cannot run as configured."""


class ConfigError(FatalError):
    """Raised for a bad flag, environment variable or config file."""


class BundleError(FatalError):
    """Raised when a bundle cannot be trusted or run.

    Attributes mirror the message so that tools (``bundle validate --json``) can report them
    as data: ``file`` (relative to the bundle), ``field``, ``expected`` and ``found``.
    """

    def __init__(
        self,
        file: str,
        field: str,
        expected: str,
        found: Any,
        *,
        hint: str | None = None,
    ) -> None:
        self.file = file
        self.field = field
        self.expected = expected
        self.found = found
        self.hint = hint
        super().__init__(self._render())

    def _render(self) -> str:
        found = self.found if isinstance(self.found, str) else repr(self.found)
        text = f"{self.file}: {self.field}: expected {self.expected}, found {found}"
        return f"{text} ({self.hint})" if self.hint else text

    def as_dict(self) -> dict[str, Any]:
        """The error as plain data, for JSON reports."""
        return {
            "kind": type(self).__name__,
            "file": self.file,
            "field": self.field,
            "expected": self.expected,
            "found": self.found
            if isinstance(self.found, str | int | float | None)
            else repr(self.found),
            "hint": self.hint,
            "message": str(self),
        }


class BundleInvalidError(BundleError):
    """Raised when the manifest or a bundle file breaks the zeroproofml contract."""


class BundleIntegrityError(BundleError):
    """Raised when a size, a hash or a pinned manifest digest does not match."""


class UnverifiedBundleError(BundleError):
    """Raised for a schema-v1 bundle (no model hash) unless legacy bundles are allowed."""


class ModelLoadError(BundleError):
    """Raised when the verified model bytes cannot be turned into a runnable session."""
