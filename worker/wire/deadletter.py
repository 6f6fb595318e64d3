"""Dead-letter headers: the original key and value travel unchanged, the reason rides in headers."""

from __future__ import annotations

from typing import Final

from worker.wire.decode import ErrorCode

MAX_REASON_BYTES: Final = 1024
_ELLIPSIS: Final = "..."


def _capped(reason: str) -> bytes:
    """UTF-8 of ``reason``, cut on a character boundary so the header stays valid UTF-8."""
    data = reason.encode("utf-8", "replace")
    if len(data) <= MAX_REASON_BYTES:
        return data
    room = MAX_REASON_BYTES - len(_ELLIPSIS)
    return data[:room].decode("utf-8", "ignore").encode("utf-8") + _ELLIPSIS.encode()


def dead_letter_headers(
    code: ErrorCode | str, reason: str, topic: str, partition: int, offset: int
) -> list[tuple[str, bytes]]:
    """Headers ``scm-error-code``, ``scm-error`` (at most 1 KiB) and the source coordinates."""
    return [
        ("scm-error-code", str(code).encode("utf-8", "replace")),
        ("scm-error", _capped(reason)),
        ("scm-source-topic", topic.encode("utf-8", "replace")),
        ("scm-source-partition", str(partition).encode()),
        ("scm-source-offset", str(offset).encode()),
    ]
