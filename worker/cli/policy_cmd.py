"""``scm-worker policy create|validate|show``."""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from worker.bundle import verify_bundle
from worker.cli.exit_codes import EXIT_INVALID, EXIT_OK
from worker.errors import BundleError, ConfigError
from worker.policy.check import load_policy
from worker.policy.model import (
    BundlePin,
    DirectionHead,
    Drift,
    OperatingPoint,
    Policy,
    Provenance,
    Routing,
    read_policy,
    write_policy,
)


def register(commands: Any) -> None:
    """Add the ``policy`` command group."""
    group = commands.add_parser("policy", help="create, validate and show inference policies")
    sub = group.add_subparsers(dest="policy_command", required=True, metavar="SUBCOMMAND")
    create = sub.add_parser("create", help="write a policy pinned to a bundle on disk")
    create.add_argument("--bundle", required=True, type=Path, metavar="DIR")
    create.add_argument("--out", required=True, type=Path, metavar="POLICY")
    create.add_argument("--name", required=True)
    create.add_argument("--revision", required=True)
    create.add_argument(
        "--operating-point",
        type=Path,
        metavar="FILE",
        help="operating_point.json from `tau sweep --select`",
    )
    create.add_argument(
        "--expected-acceptance-rate",
        type=float,
        metavar="RATE",
        help="without a sweep: the acceptance the deployment expects",
    )
    create.add_argument("--on-fault", choices=["solver", "reject"], default="solver")
    create.add_argument("--on-semantic", choices=["solver", "reject"], default="solver")
    create.add_argument("--on-mixed", choices=["solver", "reject"])
    create.add_argument("--on-gap", choices=["accept", "reject", "solver"], default="accept")
    create.add_argument("--drift-window-s", type=float, default=60.0)
    create.add_argument("--drift-threshold", type=float, default=0.1)
    create.add_argument("--fault-threshold", type=float, default=0.05)
    create.add_argument("--allow-unverified-legacy", action="store_true")
    create.add_argument("--source", default="scm-worker policy create")
    create.add_argument(
        "--direction-head", type=Path, metavar="FILE.onnx", help="pin a direction head"
    )
    create.add_argument("--direction-head-input", metavar="NAME")
    create.add_argument("--calibrator-store", type=Path, metavar="DIR")
    create.add_argument("--direction-reject-threshold", type=float, default=0.0, metavar="X")
    create.set_defaults(handler=cmd_create)
    for name, handler, text in (
        ("validate", cmd_validate, "full cross-check against disk"),
        ("show", cmd_show, "print the policy and its digest"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument("policy", type=Path, metavar="POLICY")
        command.set_defaults(handler=handler)


def _git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607 - git from PATH, provenance only
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def _relative(path: Path, out_dir: Path) -> str:
    try:
        return str(path.resolve().relative_to(out_dir))
    except ValueError:
        return str(path.resolve())


def _direction_head(args: argparse.Namespace, out_dir: Path) -> DirectionHead | None:
    if args.direction_head is None:
        if args.calibrator_store is not None:
            raise ConfigError("--calibrator-store: expected --direction-head as well, found none")
        return None
    if not 0.0 <= args.direction_reject_threshold <= 1.0:
        raise ConfigError(
            "--direction-reject-threshold: expected a number in [0, 1], "
            f"found {args.direction_reject_threshold}"
        )
    try:
        raw = args.direction_head.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"--direction-head {args.direction_head}: expected a readable file, found {exc}"
        ) from exc
    return DirectionHead(
        model_path=_relative(args.direction_head, out_dir),
        model_sha256=hashlib.sha256(raw).hexdigest(),
        input=args.direction_head_input,
        calibrator_store=(
            _relative(args.calibrator_store, out_dir) if args.calibrator_store else None
        ),
        reject_threshold=args.direction_reject_threshold,
    )


def cmd_create(args: argparse.Namespace) -> int:
    """Pin the bundle by its digests; record the operating point and the routing."""
    try:
        bundle = verify_bundle(args.bundle, allow_unverified_legacy=args.allow_unverified_legacy)
    except BundleError as exc:
        raise ConfigError(f"--bundle: {exc}") from exc
    point = None
    if args.operating_point is not None:
        record = json.loads(args.operating_point.read_text())
        point = OperatingPoint(
            tau_infer=record["tau_infer"],
            expected_acceptance_rate=record["expected_acceptance_rate"],
            sweep_sha256=record.get("sweep_sha256"),
            strategy=record.get("strategy", "manual"),
            bound=record.get("bound"),
        )
    elif args.expected_acceptance_rate is not None:
        point = OperatingPoint(
            tau_infer=bundle.header.tau_infer,
            expected_acceptance_rate=args.expected_acceptance_rate,
        )
    out_dir = args.out.resolve().parent
    relative = _relative(Path(bundle.path), out_dir)
    policy = Policy(
        name=args.name,
        revision=args.revision,
        bundle=BundlePin(
            path=relative,
            manifest_sha256=bundle.digest,
            model_sha256=bundle.model_sha256,
            allow_unverified_legacy=args.allow_unverified_legacy,
        ),
        routing=Routing(
            on_fault=args.on_fault,
            on_semantic=args.on_semantic,
            on_mixed=args.on_mixed,
            on_gap=args.on_gap,
        ),
        operating_point=point,
        direction_head=_direction_head(args, out_dir),
        drift=Drift(
            window_s=args.drift_window_s,
            accept_threshold=args.drift_threshold,
            fault_threshold=args.fault_threshold,
        ),
        provenance=Provenance(
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            source=args.source,
            git_commit=_git_commit(),
        ),
    )
    digest = write_policy(args.out, policy)
    print(f"wrote {args.out} (sha256 {digest})")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    """Exit 0 when everything the policy names is on disk and agrees; 1 with the reason."""
    try:
        policy, digest = read_policy(args.policy)
        loaded = load_policy(policy, digest, args.policy)
    except ConfigError as exc:
        print(f"invalid: {exc}")
        return EXIT_INVALID
    print(
        f"valid: {args.policy} (sha256 {digest}) {policy.name}@{policy.revision} -> bundle "
        f"{loaded.runner.bundle.digest} adapter {loaded.runner.adapter.name}"
    )
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    """Print the policy with its digest."""
    policy, digest = read_policy(args.policy)
    print(json.dumps({"sha256": digest, **policy.model_dump(mode="json")}, indent=2))
    return EXIT_OK
