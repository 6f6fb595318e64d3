"""Dead-letter headers: the original key and value travel unchanged, the reason rides in headers."""

from __future__ import annotations

from typing import Final

from worker.wire.decode import ErrorCode

MAX_REASON_BYTES: Final = 1024
# Under librdkafka's and Apache Kafka's 1 MB record limits with room for key and headers:
# a dead letter the broker refuses would hold its partition back for ever.
MAX_VALUE_BYTES: Final = 900_000
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


def dead_letter_value(
    value: bytes | None, limit: int = MAX_VALUE_BYTES
) -> tuple[bytes | None, list[tuple[str, bytes]]]:
    """The original value, or its first ``limit`` bytes and ``scm-value-truncated`` (its size)."""
    if value is None or len(value) <= limit:
        return value, []
    return value[:limit], [("scm-value-truncated", str(len(value)).encode())]
