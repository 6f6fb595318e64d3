"""``policy.json``: the deployment, as a file that can be reviewed, pinned and audited.

Unlike the peer design, nothing here ever falls back silently: a policy that does not match
its bundle on disk is refused with the exact mismatch, and a running worker keeps its current
policy when a new one fails.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from worker.errors import ConfigError

POLICY_VERSION = 1
LABELS = ("below", "in_range", "above")
Action = Literal["solver", "reject"]


class BundlePin(BaseModel):
    """Which bundle, pinned by content."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = Field(description="bundle directory, relative to the policy file or absolute")
    manifest_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    allow_unverified_legacy: bool = False


class Routing(BaseModel):
    """What happens to each kind of sample."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    on_fault: Action = "solver"
    on_semantic: Action = "solver"
    on_mixed: Action | None = Field(default=None, description="default: follows on_fault")
    on_gap: Literal["accept", "reject", "solver"] = "accept"


class OperatingPoint(BaseModel):
    """The tau chosen from a sweep, and what it promises."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tau_infer: float = Field(gt=0)
    expected_acceptance_rate: float = Field(ge=0, le=1)
    sweep_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    strategy: Literal["safety", "coverage", "manual"] = "manual"
    bound: float | None = None


class Drift(BaseModel):
    """Drift-alert thresholds; the baseline is the operating point's expected acceptance."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window_s: float = Field(default=60.0, gt=0)
    accept_threshold: float = Field(default=0.1, gt=0, le=1)
    fault_threshold: float = Field(default=0.05, gt=0, le=1)
    fault_baseline: float | None = Field(default=None, ge=0, le=1)


class DirectionHead(BaseModel):
    """Optional direction head and its calibrator store (README: Direction heads)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_path: str
    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    input: str | None = Field(
        default=None, description="bundle input it reads; default: the bundle's only input"
    )
    labels: tuple[str, ...] | None = Field(
        default=None, description="label of each logit column; default below/[in_range]/above"
    )
    calibrator_store: str | None = None
    reject_threshold: float = Field(default=0.0, ge=0, le=1)
    per_device_reject_thresholds: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=dict
    )


class Provenance(BaseModel):
    """Where the policy came from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    created_at: str
    source: str
    git_commit: str | None = None


class Policy(BaseModel):
    """One deployment decision, versioned."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy_version: Literal[1] = 1
    name: str = Field(min_length=1, max_length=128)
    revision: str = Field(min_length=1, max_length=128)
    bundle: BundlePin
    routing: Routing = Routing()
    operating_point: OperatingPoint | None = None
    drift: Drift = Drift()
    direction_head: DirectionHead | None = None
    provenance: Provenance


def policy_digest(raw: bytes) -> str:
    """Identity of a policy file: SHA-256 of its bytes (hot reload compares this)."""
    return hashlib.sha256(raw).hexdigest()


def parse_policy(raw: bytes, source: str) -> Policy:
    """Parse and validate; one ConfigError naming the field on failure."""
    try:
        return Policy.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(document)"
        raise ConfigError(
            f"{source}: {where}: {first['msg']}, found {first.get('input')!r}"
        ) from exc


def read_policy(path: Path) -> tuple[Policy, str]:
    """The policy and its digest, read once."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"--policy {path}: expected a readable file, found {exc}") from exc
    return parse_policy(raw, str(path)), policy_digest(raw)


def resolve(policy_path: Path, relative: str) -> Path:
    """Paths in a policy are relative to the policy file."""
    candidate = Path(relative)
    return candidate if candidate.is_absolute() else policy_path.parent / candidate


def write_policy(path: Path, policy: Policy) -> str:
    """Atomic write: temp file in the same directory, fsync, rename. Returns the digest."""
    raw = policy.model_dump_json(indent=2).encode() + b"\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return policy_digest(raw)


def same_tau(a: float, b: float) -> bool:
    """Thresholds compare exactly, up to the last bit a JSON round trip can move."""
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)
