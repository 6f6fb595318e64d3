"""Solver requests in, solver answers out, one batch at a time (pure code).

Every request gets exactly one answer, so a fallback team can tie out requests against answers:
a request whose reading cannot be solved (a broken sensor, a missing input) is answered with
``status`` and a ``reason`` instead of a number, and a request that is not even JSON is
answered with what could be read of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import orjson

from worker.arm import DLS_DAMPING, LINKS, damped_least_squares

METHOD: Final = "damped_least_squares"
INPUT_NAME: Final = "input_0"


@dataclass(frozen=True, slots=True)
class SolverSettings:
    """What the analytic fallback needs to know about the arm and where its readings are."""

    damping: float = DLS_DAMPING
    links: tuple[float, float] = LINKS
    input_name: str = INPUT_NAME


@dataclass(frozen=True, slots=True)
class Answer:
    """One solver answer: its status (for counting) and its JSON bytes."""

    status: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class RequestRef:
    """Where a solver request was read from: answers name it, duplicates share it."""

    topic: str
    partition: int
    offset: int


def _reading(request: Any, input_name: str) -> tuple[list[float] | None, str | None]:
    """The (theta1, theta2, dx, dy) row of a request, or the reason there is none."""
    if not isinstance(request, dict):
        return None, f"request: expected a JSON object, found {type(request).__name__}"
    inputs = request.get("inputs")
    if not isinstance(inputs, dict) or input_name not in inputs:
        return None, f"inputs: expected an entry {input_name!r}, found none"
    row = inputs[input_name]
    if not isinstance(row, list) or len(row) != 4:
        return None, f"inputs.{input_name}: expected 4 numbers (theta1, theta2, dx, dy)"
    values: list[float] = []
    for value in row:
        if value is None:
            return None, f"inputs.{input_name}: a reading is null (broken sensor)"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, f"inputs.{input_name}: expected numbers, found {type(value).__name__}"
        values.append(float(value))
    if not all(np.isfinite(values)):
        return None, f"inputs.{input_name}: a reading is not finite"
    return values, None


def _string(request: Any, name: str) -> str | None:
    value = request.get(name) if isinstance(request, dict) else None
    return value if isinstance(value, str) else None


def answer_batch(
    values: Sequence[bytes | None],
    refs: Sequence[RequestRef],
    settings: SolverSettings,
    now: float,
) -> list[Answer]:
    """One answer per request, in order; one vectorised solve for the whole batch."""
    requests: list[Any] = []
    rows: list[list[float]] = []
    solvable: list[int] = []
    reasons: list[str | None] = []
    for i, value in enumerate(values):
        reason: str | None
        try:
            request = orjson.loads(value) if value is not None else None
        except orjson.JSONDecodeError as exc:
            request, reason = None, f"request: expected JSON, found invalid bytes ({exc})"
        else:
            reading, reason = _reading(request, settings.input_name)
            if reading is not None:
                solvable.append(i)
                rows.append(reading)
        requests.append(request)
        reasons.append(reason)
    steps: list[list[float]] = []
    if rows:
        solved = damped_least_squares(np.array(rows), settings.damping, settings.links)
        steps = solved.tolist()
    answers: list[list[float] | None] = [None] * len(values)
    for i, step in zip(solvable, steps, strict=True):
        answers[i] = step
    out: list[Answer] = []
    for request, ref, answer, reason in zip(requests, refs, answers, reasons, strict=True):
        status = "solved" if answer is not None else "unsolvable"
        record = {
            "message_id": _string(request, "message_id"),
            "device_id": _string(request, "device_id"),
            "source": request.get("source") if isinstance(request, dict) else None,
            "request": {"topic": ref.topic, "partition": ref.partition, "offset": ref.offset},
            "status": status,
            "answer": answer,
            "reason": reason,
            "method": METHOD,
            "damping": settings.damping,
            "solved_at": now,
        }
        out.append(Answer(status, orjson.dumps(record)))
    return out
