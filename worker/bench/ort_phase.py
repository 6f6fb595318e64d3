"""ONNX Runtime alone: the bundle's session on ready-made batches, no decode, no adapter."""

from __future__ import annotations

import time

import numpy as np

from worker.fleet.simulate import simulate_readings
from worker.inference import BundleRunner


def ort_samples_per_s(runner: BundleRunner, batch: int, seconds: float) -> float:
    """Samples per second through ``session.run`` at ``batch`` rows per call."""
    readings = simulate_readings(batch, np.random.default_rng(11))
    feed = runner.prepare({runner.inputs[0].name: readings})
    fetch = [o.name for o in runner.session.get_outputs()]
    for _ in range(20):  # warm-up: first calls allocate
        runner.session.run(fetch, feed)
    calls = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(50):
            runner.session.run(fetch, feed)
        calls += 50
        now = time.perf_counter()
        if now >= deadline:
            return calls * batch / (now - started)
