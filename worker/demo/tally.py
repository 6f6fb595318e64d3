"""What the demo's observer has read from every topic, and whether it ties out (pure code).

The observer is an independent reader: it counts what the broker holds, not what the
processes say they did, so a tie-out here is evidence, not an echo.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from worker.arm import damped_least_squares

ROLES = ("features", "results", "solver_requests", "solver_answers", "dead_letters", "events")
ALERT_EVENTS = ("acceptance-drift-alert", "fault-rate-alert")


def _flat(nested: Any) -> list[Any]:
    """Leaves of a nested list in order (a per-element mask and its values line up)."""
    if not isinstance(nested, list):
        return [nested]
    return [leaf for item in nested for leaf in _flat(item)]


@dataclass
class Tally:
    """Counts per topic role, plus what a reader of results wants to know."""

    counts: Counter[str] = field(default_factory=Counter)
    routes: Counter[str] = field(default_factory=Counter)
    provenance: Counter[str] = field(default_factory=Counter)
    gap_samples: int = 0
    leaked_bottoms: int = 0
    dead_letter_codes: Counter[str] = field(default_factory=Counter)
    answer_status: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    open_alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    alert_log: list[dict[str, Any]] = field(default_factory=list)
    readings: dict[str, list[float | None]] = field(default_factory=dict)
    accepted: dict[str, list[float]] = field(default_factory=dict)
    published: int | None = None  # what the fleet says the broker acknowledged, once known
    first_ts: float | None = None  # the earliest feature timestamp: when the fleet began

    def add(self, role: str, value: bytes | None, headers: dict[str, bytes]) -> None:
        """Count one record read from the topic playing ``role``."""
        self.counts[role] += 1
        if role == "dead_letters":
            self.dead_letter_codes[headers.get("scm-error-code", b"?").decode()] += 1
            return
        try:
            record = orjson.loads(value or b"")
        except orjson.JSONDecodeError:
            return  # malformed features are expected; other topics are ours and never are
        if not isinstance(record, dict):
            return
        getattr(self, f"_{role}")(record)

    def _features(self, record: dict[str, Any]) -> None:
        ts = record.get("ts")
        if isinstance(ts, int | float) and (self.first_ts is None or ts < self.first_ts):
            self.first_ts = float(ts)
        inputs = record.get("inputs")
        row = inputs.get("input_0") if isinstance(inputs, dict) else None
        if isinstance(record.get("message_id"), str) and isinstance(row, list) and len(row) == 4:
            self.readings[record["message_id"]] = row

    def _results(self, record: dict[str, Any]) -> None:
        self.routes[record["route"]] += 1
        self.provenance[record["provenance"]] += 1
        self.gap_samples += bool(record["gap"])
        outputs = record["outputs"]
        decoded, bottom = outputs["decoded"], outputs["bottom_mask"]
        self.leaked_bottoms += sum(
            1 for v, b in zip(_flat(decoded), _flat(bottom), strict=True) if b and v is not None
        )
        if record["route"] == "accept":
            self.accepted[record["message_id"]] = decoded

    def _solver_requests(self, record: dict[str, Any]) -> None:
        """Counted in ``add``; the request itself needs no more reading."""

    def _solver_answers(self, record: dict[str, Any]) -> None:
        self.answer_status[record["status"]] += 1

    def _events(self, record: dict[str, Any]) -> None:
        name = str(record.get("event"))
        self.events[name] += 1
        if name in ALERT_EVENTS:
            key = f"{record.get('scope')} {record.get('metric')}"
            self.alert_log.append(record)
            if record.get("state") == "raised":
                self.open_alerts[key] = record
            else:
                self.open_alerts.pop(key, None)

    # --- the figures -----------------------------------------------------------------------

    def ties_out(self) -> dict[str, bool]:
        """The demo's promises: nothing lost, every request answered, no bottom as a number."""
        c = self.counts
        return {
            "fleet published = messages in": self.published == c["features"],
            "messages in = results + dead letters": c["features"]
            == c["results"] + c["dead_letters"],
            "solver requests = solver answers": c["solver_requests"] == c["solver_answers"],
            "bottoms published as numbers = 0": self.leaked_bottoms == 0,
        }

    def accepted_error(self) -> dict[str, float] | None:
        """How far accepted answers lie from damped least squares on the same readings."""
        ids = [m for m in self.accepted if m in self.readings]
        rows = [self.readings[m] for m in ids]
        if not ids:
            return None
        readings = np.array([[np.nan if v is None else v for v in r] for r in rows], dtype=float)
        truth = damped_least_squares(readings)
        error = np.abs(np.array([self.accepted[m] for m in ids], dtype=float) - truth).max(axis=1)
        return {
            "samples": len(ids),
            "median_rad": float(np.median(error)),
            "p99_rad": float(np.quantile(error, 0.99)),
        }

    def summary(self) -> dict[str, Any]:
        """Everything the report and the summary file say, as plain data."""
        return {
            "counts": {role: self.counts[role] for role in ROLES},
            "routes": dict(self.routes),
            "provenance": dict(self.provenance),
            "gap_samples": self.gap_samples,
            "dead_letter_codes": dict(self.dead_letter_codes),
            "solver_answers": dict(self.answer_status),
            "events": dict(self.events),
            "alerts": [
                {k: a.get(k) for k in ("event", "state", "scope", "metric", "delta", "p_value")}
                for a in self.alert_log
            ],
            "open_alerts": sorted(self.open_alerts),
            "leaked_bottoms": self.leaked_bottoms,
            "accepted_vs_dls": self.accepted_error(),
            "ties_out": self.ties_out(),
        }
