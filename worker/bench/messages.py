"""Feature messages as a fleet sends them, pre-encoded so that producing them is cheap.

The readings come from the demo's RR-arm simulation: about 15 % of arms near a singular pose
(semantic bottoms, routed to the solver) and 1 % with a broken sensor. Broken readings are
written the way Python's ``json`` writes them (``NaN``), so the decoder's lenient fallback
is exercised too.
"""

from __future__ import annotations

import json
import math

import numpy as np

from worker.fleet.simulate import simulate_readings

DEVICES = 64
TS_MARK = b'"ts":'


def _vector(row: list[float]) -> str:
    if all(math.isfinite(v) for v in row):
        return ",".join(map(repr, row))
    return json.dumps(row)[1:-1]  # NaN and Infinity tokens, as fleets send them


def feature_messages(
    n: int, seed: int = 7, *, input_name: str = "input_0", ts: float = 0.0, tag: str = "b"
) -> list[tuple[bytes, bytes]]:
    """``n`` (key, value) pairs; message ids ``<tag>-<i>``, keys ``arm-<i % DEVICES>``."""
    readings = simulate_readings(n, np.random.default_rng(seed)).astype(np.float64).tolist()
    out: list[tuple[bytes, bytes]] = []
    for i, row in enumerate(readings):
        device = f"arm-{i % DEVICES}"
        value = (
            f'{{"message_id":"{tag}-{i}","device_id":"{device}",'
            f'"inputs":{{"{input_name}":[{_vector(row)}]}},"ts":{ts!r},'
            f'"context":{{"shift":"night","seq":{i}}}}}'
        )
        out.append((device.encode(), value.encode()))
    return out


def around_ts(template: bytes) -> tuple[bytes, bytes]:
    """A message from ``feature_messages(..., ts=0.0)`` split where its ``"ts":`` goes."""
    head, _, tail = template.partition(b'"ts":0.0')
    return head, tail


def ts_field(ts: float) -> bytes:
    """The ``"ts":`` member that goes between ``around_ts``'s halves."""
    return b'"ts":%r' % ts


def stamped(template: bytes, ts: float) -> bytes:
    """A message from ``feature_messages(..., ts=0.0)`` with ``ts`` set to now (paced runs)."""
    head, tail = around_ts(template)
    return head + ts_field(ts) + tail


def result_ts(value: bytes) -> float | None:
    """The ``ts`` a result echoes, read without parsing the whole record."""
    start = value.find(TS_MARK)
    if start < 0:
        return None
    start += len(TS_MARK)
    end = value.find(b",", start)
    text = value[start:end]
    return None if text == b"null" else float(text)
