"""Limits enforced on every feature message before any large allocation."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds that keep one hostile message from costing more than a bounded amount."""

    max_message_bytes: int = 1_048_576
    max_context_bytes: int = 4096  # serialized JSON size of `context`
    max_id_length: int = 128
    max_elements: int = 65_536  # numbers per message across all inputs
    max_depth: int = 16  # nesting depth of any input array
