"""Dead-letter headers: the original bytes travel unchanged, the reason rides in headers."""

from __future__ import annotations

MAX_REASON_BYTES = 1024


def dead_letter_headers(
    code: str, reason: str, topic: str, partition: int, offset: int
) -> list[tuple[str, bytes]]:
    """Headers ``scm-error-code``, ``scm-error`` and the source coordinates."""
    text = reason.encode("utf-8", "replace")
    if len(text) > MAX_REASON_BYTES:
        text = text[: MAX_REASON_BYTES - 3] + b"..."
    return [
        ("scm-error-code", str(code).encode()),
        ("scm-error", text),
        ("scm-source-topic", topic.encode()),
        ("scm-source-partition", str(partition).encode()),
        ("scm-source-offset", str(offset).encode()),
    ]
