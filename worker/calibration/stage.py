"""Assembly of the direction stage: head runner + verified store + thresholds, for one bundle.

Built at start (a failure exits with one line) and for each hot-reload generation (a failure
keeps the running generation). The loop makes one call per batch: :meth:`DirectionStage.records`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from worker.calibration.direction import DirectionPolicy, head_class_ids
from worker.calibration.store import load_store
from worker.errors import ConfigError
from worker.inference.head import DirectionHeadRunner
from worker.inference.result import StrictResult
from worker.inference.runner import InputSpec


@dataclass(frozen=True)
class DirectionSettings:
    """What configures a direction head (from flags or a policy's ``direction_head``)."""

    head: Path
    input_name: str | None = None
    head_sha256: str | None = None
    labels: tuple[str, ...] | None = None
    store: Path | None = None
    threshold: float = 0.0
    device_thresholds: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class DirectionStage:
    """A head bound to one bundle generation, with its calibrators and thresholds."""

    runner: DirectionHeadRunner
    policy: DirectionPolicy

    def records(
        self, feed: Mapping[str, Any], result: StrictResult, device_ids: Sequence[str]
    ) -> list[dict[str, Any]]:
        """One ``direction`` object per sample of the batch."""
        if result.batch_size == 0:
            return []
        logits = self.runner.run(np.asarray(feed[self.runner.input_name]))
        return self.policy.records(result, logits, device_ids)

    @property
    def store_id(self) -> str | None:
        """SHA-256 of the store manifest in use, if any."""
        return self.policy.store.store_id if self.policy.store is not None else None


def build_stage(
    settings: DirectionSettings, bundle_inputs: tuple[InputSpec, ...], bundle_digest: str
) -> DirectionStage:
    """Load the head, check labels and thresholds, load and verify the store; or ConfigError."""
    runner = DirectionHeadRunner(
        settings.head, bundle_inputs, settings.input_name, settings.head_sha256
    )
    labels = runner.classes(settings.labels)
    try:
        head_class_ids(labels)
    except ValueError as exc:
        raise ConfigError(f"direction head {settings.head}: {exc}") from exc
    for name, value in [("threshold", settings.threshold), *settings.device_thresholds.items()]:
        if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
            raise ConfigError(
                f"direction reject threshold {name!r}: expected a number in [0, 1], found {value!r}"
            )
    store = None
    if settings.store is not None:
        store = load_store(
            settings.store,
            bundle_digest=bundle_digest,
            head_sha256=runner.sha256,
            classes=list(labels),
        )
    policy = DirectionPolicy(
        labels, store, float(settings.threshold), dict(settings.device_thresholds)
    )
    return DirectionStage(runner, policy)
