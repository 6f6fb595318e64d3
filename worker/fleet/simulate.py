"""Simulated RR-arm readings and the feature messages that carry them (pure code).

Three kinds of robot: most wander over their workspace; a share of them (``sweepers``) work
around the folded pose (theta1, theta2) = (pi, pi), where the reference bundle's learned
denominator vanishes, and pass through it every few seconds; and one robot may *degrade* after a
given time, getting stuck there, which is what a per-device acceptance-drift alert is for. On top
of that a few sensors send broken readings (a NaN, published as ``null``) and a few producers
send malformed messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import orjson

Kind = Literal["valid", "broken", "malformed"]
KINDS: Final[tuple[Kind, ...]] = ("valid", "broken", "malformed")
INPUT_NAME: Final = "input_0"


def simulate_readings(n: int, rng: np.random.Generator) -> np.ndarray:
    """(theta1, theta2, dx, dy) rows; some arms near singular poses, a few broken sensors."""
    theta1 = rng.uniform(-np.pi, np.pi, n)
    theta2 = rng.uniform(-np.pi, np.pi, n)
    near = rng.random(n) < 0.15
    theta2[near] = rng.choice([0.0, np.pi], near.sum()) + rng.normal(0, 0.02, near.sum())
    step = rng.normal(0, 0.05, (n, 2))
    readings = np.column_stack([theta1, theta2, step]).astype(np.float32)
    broken = rng.random(n) < 0.01
    readings[broken, rng.integers(0, 4, broken.sum())] = np.nan
    return readings


@dataclass(frozen=True, slots=True)
class FleetShape:
    """How many robots, and how often each kind of trouble happens."""

    devices: int = 20
    sweeper_fraction: float = 0.25
    broken_fraction: float = 0.01
    malformed_fraction: float = 0.005
    degrade_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message as the fleet sends it, and what kind it is (for tie-outs)."""

    key: bytes
    value: bytes
    kind: Kind
    message_id: str


def device_name(index: int) -> str:
    """Robot ids as a fleet would name them."""
    return f"arm-{index:03d}"


def _malformed(rng: np.random.Generator, message_id: str, device: str) -> bytes:
    """One of the ways producers get messages wrong; each must become a dead letter."""
    choice = int(rng.integers(0, 5))
    if choice == 0:
        return b'{"message_id": "' + message_id.encode() + b'", "inputs": {"input_0": [0.1, '
    if choice == 1:
        return orjson.dumps({"message_id": message_id, "device_id": device})  # no inputs
    if choice == 2:
        return orjson.dumps(
            {"message_id": message_id, "device_id": device, "inputs": {INPUT_NAME: [0.1, 0.2]}}
        )
    if choice == 3:
        return orjson.dumps(
            {"message_id": message_id, "device_id": device, "inputs": {"joints": [1, 2, 3, 4]}}
        )
    return b"\xff\xfe not even text"


class Fleet:
    """A deterministic (seeded) fleet; ``messages`` advances it by ``n`` messages at ``now``."""

    def __init__(self, shape: FleetShape, seed: int, run_id: str, started_at: float) -> None:
        self.shape = shape
        self.run_id = run_id
        self.started_at = started_at
        self.rng = np.random.default_rng(seed)
        n = shape.devices
        self.names = [device_name(i) for i in range(n)]
        self.sweeper = np.arange(n) < round(shape.sweeper_fraction * n)
        self.rng.shuffle(self.sweeper)
        self.phase = self.rng.uniform(0, 2 * np.pi, n)
        self.theta = self.rng.uniform(-np.pi, np.pi, (n, 2))
        # The robot that degrades, if any: the first that is not a sweeper, so that its drop
        # stands out against its own history.
        normal = np.flatnonzero(~self.sweeper)
        self.degrading = int(normal[0]) if normal.size else 0
        self.sent = 0

    def readings(self, devices: np.ndarray, now: float) -> np.ndarray:
        """(theta1, theta2, dx, dy) for each chosen device at time ``now`` (float64)."""
        n = devices.size
        # Wanderers take small random steps; their poses stay where the walk took them.
        self.theta[devices] += self.rng.normal(0, 0.05, (n, 2))
        self.theta = (self.theta + np.pi) % (2 * np.pi) - np.pi
        theta = self.theta[devices].copy()
        sweep = self.sweeper[devices]
        elapsed = now - self.started_at
        # Sweepers circle the folded pose (theta1, theta2) = (pi, pi), where the reference
        # bundle's learned denominator vanishes, and pass through it every few seconds.
        phase = self.phase[devices[sweep]]
        theta[sweep, 0] = np.pi + 0.9 * np.sin(0.5 * elapsed + phase)
        theta[sweep, 1] = np.pi + 0.7 * np.sin(0.8 * elapsed + 2 * phase)
        degrade = self.shape.degrade_after_s
        if degrade is not None and elapsed >= degrade:
            stuck = devices == self.degrading
            count = int(stuck.sum())
            theta[stuck] = np.pi + self.rng.normal(0, 0.02, (count, 2))
        theta = (theta + np.pi) % (2 * np.pi) - np.pi  # encoders report angles in [-pi, pi)
        steps = self.rng.normal(0, 0.05, (n, 2))
        return np.column_stack([theta, steps])

    def messages(self, n: int, now: float) -> list[Outgoing]:
        """The next ``n`` messages, stamped ``now`` (epoch seconds)."""
        if n <= 0:
            return []
        devices = self.rng.integers(0, self.shape.devices, n)
        rows = self.readings(devices, now)
        roll = self.rng.random(n)
        broken = roll < self.shape.broken_fraction
        malformed = (roll >= self.shape.broken_fraction) & (
            roll < self.shape.broken_fraction + self.shape.malformed_fraction
        )
        rows[broken, self.rng.integers(0, 4, int(broken.sum()))] = np.nan
        out: list[Outgoing] = []
        kind: Kind
        for i, (device, row) in enumerate(zip(devices.tolist(), rows.tolist(), strict=True)):
            name = self.names[device]
            message_id = f"{self.run_id}-{self.sent + i:09d}"
            if malformed[i]:
                value, kind = _malformed(self.rng, message_id, name), "malformed"
            else:
                kind = "broken" if broken[i] else "valid"
                # orjson writes NaN as null: a broken reading, which the worker turns into a
                # fault bottom rather than a dead letter.
                value = orjson.dumps(
                    {
                        "message_id": message_id,
                        "device_id": name,
                        "inputs": {INPUT_NAME: row},
                        "ts": now,
                    }
                )
            out.append(Outgoing(name.encode(), value, kind, message_id))
        self.sent += n
        return out
