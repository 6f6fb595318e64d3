"""Cross-check a policy against what is on disk: bundle, digests, thresholds, labels, store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from worker.bundle import VerifiedBundle, verify_bundle
from worker.calibration.stage import DirectionSettings, DirectionStage, build_stage
from worker.errors import BundleError, ConfigError
from worker.inference import BundleRunner
from worker.inference.runner import InputSpec
from worker.policy.model import LABELS, Policy, resolve, same_tau


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    """A policy whose bundle is verified, loaded and warmed up: ready to swap in."""

    policy: Policy
    digest: str
    runner: BundleRunner
    direction: DirectionStage | None = None


def check_bundle(policy: Policy, bundle: VerifiedBundle, source: str) -> None:
    """Digest pins, and the operating point's tau against the bundle's metadata."""
    if bundle.model_sha256 != policy.bundle.model_sha256:
        raise ConfigError(
            f"{source}: bundle.model_sha256: expected {policy.bundle.model_sha256},"
            f" found {bundle.model_sha256} in {bundle.path}"
        )
    point = policy.operating_point
    if point is not None and not same_tau(point.tau_infer, bundle.header.tau_infer):
        raise ConfigError(
            f"{source}: operating_point.tau_infer: expected the bundle's "
            f"tau_infer {bundle.header.tau_infer!r}, found {point.tau_infer!r}"
        )


def check_direction_head(policy: Policy, policy_path: Path, source: str) -> None:
    """Labels from the known set, files present."""
    head = policy.direction_head
    if head is None:
        return
    if head.labels is not None and (
        not set(head.labels) <= set(LABELS) or len(head.labels) not in (2, 3)
    ):
        raise ConfigError(
            f"{source}: direction_head.labels: expected 2 or 3 of {list(LABELS)}, "
            f"found {list(head.labels or ())}"
        )
    if not resolve(policy_path, head.model_path).is_file():
        raise ConfigError(
            f"{source}: direction_head.model_path: expected a file, found nothing "
            f"at {resolve(policy_path, head.model_path)}"
        )
    if (
        head.calibrator_store is not None
        and not resolve(policy_path, head.calibrator_store).is_dir()
    ):
        raise ConfigError(
            f"{source}: direction_head.calibrator_store: expected a directory, "
            f"found nothing at {resolve(policy_path, head.calibrator_store)}"
        )


def direction_settings(policy: Policy, policy_path: Path) -> DirectionSettings | None:
    """The policy's direction head, paths resolved against the policy file."""
    head = policy.direction_head
    if head is None:
        return None
    return DirectionSettings(
        head=resolve(policy_path, head.model_path),
        input_name=head.input,
        head_sha256=head.model_sha256,
        labels=head.labels,
        store=resolve(policy_path, head.calibrator_store) if head.calibrator_store else None,
        threshold=head.reject_threshold,
        device_thresholds=dict(head.per_device_reject_thresholds),
    )


def load_policy(
    policy: Policy,
    digest: str,
    policy_path: Path,
    fallback_direction: DirectionSettings | None = None,
    inference_threads: int | None = None,
) -> LoadedPolicy:
    """Verify everything the policy names, load the bundle and warm it up.

    The direction head is the policy's, else ``fallback_direction`` (one given by flags), and
    its calibrator store must be bound to this policy's bundle.
    """
    source = str(policy_path)
    try:
        bundle = verify_bundle(
            resolve(policy_path, policy.bundle.path),
            allow_unverified_legacy=policy.bundle.allow_unverified_legacy,
            expected_digest=policy.bundle.manifest_sha256,
        )
    except BundleError as exc:
        raise ConfigError(f"{source}: bundle: {exc}") from exc
    check_bundle(policy, bundle, source)
    check_direction_head(policy, policy_path, source)
    runner = BundleRunner(bundle, intra_op_threads=inference_threads)
    runner.run({spec.name: _zeros(spec) for spec in runner.inputs})  # warm-up: first call costs
    settings = direction_settings(policy, policy_path) or fallback_direction
    direction = None
    if settings is not None:
        try:
            direction = build_stage(settings, runner.inputs, bundle.digest)
        except ConfigError as exc:
            raise ConfigError(f"{source}: direction_head: {exc}") from exc
    return LoadedPolicy(policy, digest, runner, direction)


def _zeros(spec: InputSpec) -> np.ndarray:
    shape = tuple(d if isinstance(d, int) else 1 for d in spec.shape[1:])
    return np.zeros((1, *shape), dtype=spec.dtype)
