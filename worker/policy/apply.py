"""A policy as a configuration layer: its values, and which explicit settings override it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from worker.policy.model import Policy, resolve


def policy_values(policy: Policy, policy_path: Path) -> dict[str, Any]:
    """The WorkerConfig keys a policy decides."""
    routing = policy.routing
    values: dict[str, Any] = {
        "bundle": resolve(policy_path, policy.bundle.path),
        "expect_digest": policy.bundle.manifest_sha256,
        "allow_unverified_legacy": policy.bundle.allow_unverified_legacy,
        "on_bottom": routing.on_semantic,
        "on_fault": routing.on_fault,
        "on_mixed": routing.on_mixed,
        "on_gap": routing.on_gap,
        "drift_window_s": policy.drift.window_s,
        "drift_threshold": policy.drift.accept_threshold,
        "fault_threshold": policy.drift.fault_threshold,
        "fault_baseline": policy.drift.fault_baseline,
    }
    head = policy.direction_head
    if head is not None:
        values["direction_head"] = resolve(policy_path, head.model_path)
        values["direction_head_input"] = head.input
        values["direction_head_sha256"] = head.model_sha256
        values["direction_labels"] = head.labels
        if head.calibrator_store is not None:
            values["calibrator_store"] = resolve(policy_path, head.calibrator_store)
        values["direction_reject_threshold"] = head.reject_threshold
        if head.per_device_reject_thresholds:
            values["direction_device_thresholds"] = dict(head.per_device_reject_thresholds)
    if policy.operating_point is not None:
        values["drift_baseline"] = policy.operating_point.expected_acceptance_rate
    return {k: v for k, v in values.items() if v is not None}


def overrides(policy_layer: dict[str, Any], explicit: dict[str, Any]) -> dict[str, Any]:
    """Explicit settings (flags, environment, file) that differ from the policy's."""
    return {
        k: v
        for k, v in explicit.items()
        if k in policy_layer and v is not None and str(v) != str(policy_layer[k])
    }
