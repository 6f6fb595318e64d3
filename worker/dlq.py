"""Dead-letter replay: which dead letters go back to the input topic, and how (pure code).

A replayed message is the producer's original key and value; headers say where it was
replayed from, so a message that fails again is traceable to its first dead letter.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from worker.replay import Recorded

REPLAYED_FROM = "scm-replayed-from"
REPLAYED_CODE = "scm-replayed-error-code"
Headers = list[tuple[str, str | bytes | None]]  # what the Kafka client's produce() takes


@dataclass
class ReplayPlan:
    """The records to send, and what was read, by error code."""

    send: list[tuple[bytes | None, bytes | None, Headers]] = field(default_factory=list)
    read: Counter[str] = field(default_factory=Counter)
    selected: Counter[str] = field(default_factory=Counter)


def error_code(record: Recorded) -> str:
    """The dead letter's ``scm-error-code`` header ("unknown" when there is none)."""
    for name, value in record.headers:
        if name == "scm-error-code":
            return value.decode("utf-8", "replace")
    return "unknown"


def plan_replay(records: Iterable[Recorded], codes: frozenset[str] | None) -> ReplayPlan:
    """Keep the dead letters whose code is in ``codes`` (all when None), in topic order."""
    plan = ReplayPlan()
    for record in records:
        code = error_code(record)
        plan.read[code] += 1
        if codes is not None and code not in codes:
            continue
        plan.selected[code] += 1
        origin = f"{record.source}/{record.partition}/{record.offset}".encode()
        headers: Headers = [(REPLAYED_FROM, origin), (REPLAYED_CODE, code.encode())]
        plan.send.append((record.key, record.value, headers))
    return plan
