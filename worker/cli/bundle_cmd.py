"""``scm-worker bundle validate|inspect|run``: offline tools around one bundle."""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from worker.bundle import verify_bundle
from worker.cli.exit_codes import EXIT_INVALID, EXIT_OK
from worker.errors import BundleError, ConfigError, InputMismatchError
from worker.inference import FIELDS, BundleRunner, StrictResult

_HEX64 = re.compile(r"\s*[0-9a-fA-F]{64}\s*")


def _digest(value: str) -> str:
    if not _HEX64.fullmatch(value):
        raise argparse.ArgumentTypeError(f"expected 64 hex characters, found {value!r}")
    return value


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", metavar="DIR", help="bundle directory")
    parser.add_argument(
        "--allow-unverified-legacy",
        action="store_true",
        help="accept schema-v1 bundles, whose model file no hash covers",
    )
    parser.add_argument(
        "--expect-digest",
        type=_digest,
        metavar="SHA256",
        help="refuse unless the manifest digest equals this (out-of-band pin)",
    )


def register(commands: Any) -> None:
    """Add the ``bundle`` command group."""
    group = commands.add_parser("bundle", help="validate, inspect or run one bundle offline")
    sub = group.add_subparsers(dest="bundle_command", required=True, metavar="SUBCOMMAND")

    validate = sub.add_parser("validate", help="check a bundle against the contract")
    _common(validate)
    validate.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    validate.set_defaults(handler=cmd_validate)

    inspect = sub.add_parser("inspect", help="inputs, outputs, thresholds, digests, adapter")
    _common(inspect)
    inspect.add_argument("--json", action="store_true", help="print JSON instead of text")
    inspect.set_defaults(handler=cmd_inspect)

    run = sub.add_parser("run", help="score an .npz of inputs into an .npz of the six fields")
    _common(run)
    run.add_argument(
        "--inputs",
        required=True,
        type=Path,
        metavar="IN.npz",
        help="one array per bundle input name",
    )
    run.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="OUT.npz",
        help="written atomically; exactly the six contract fields",
    )
    run.add_argument(
        "--chunk-rows",
        type=int,
        default=None,
        metavar="N",
        help="rows per ONNX Runtime call to bound memory (default: the whole file "
        "in one call, which is what zeroproofml does; ONNX Runtime's matrix "
        "kernels may round the last bit differently for other batch sizes)",
    )
    run.set_defaults(handler=cmd_run)


def _load(args: argparse.Namespace) -> BundleRunner:
    bundle = verify_bundle(
        args.bundle,
        allow_unverified_legacy=args.allow_unverified_legacy,
        expected_digest=args.expect_digest,
    )
    return BundleRunner(bundle)


def describe(runner: BundleRunner) -> dict[str, Any]:
    """Everything an operator needs to audit a loaded bundle, as plain data."""
    bundle = runner.bundle
    header = bundle.header
    tail = runner.tail
    return {
        "bundle": str(bundle.path),
        "manifest_sha256": bundle.digest,
        "schema_version": header.schema_version,
        "verified": bundle.verified,
        "strict_inference_schema_version": bundle.contract.strict_schema_version,
        "adapter": runner.adapter.name,
        "provenance_available": runner.adapter.provenance_available,
        "model_file": bundle.model_file,
        "model_sha256": bundle.model_sha256,
        "model_bytes": len(bundle.model_bytes),
        "sidecar_sha256": bundle.sidecar_digest,
        "external_data": [
            {
                "file": f.name,
                "bytes": f.size,
                "sha256": f.sha256,
                "tensors": f.tensors,
                "covered_by_manifest": False,
            }
            for f in bundle.external_files
        ],
        "inputs": [
            {
                "name": s.name,
                "graph_name": s.graph_name,
                "dtype": s.dtype.name,
                "shape": ["batch" if i == 0 else d for i, d in enumerate(s.shape)],
            }
            for s in runner.inputs
        ],
        "outputs": list(bundle.contract.output_names),
        "thresholds": {
            "metadata": {
                "tau_infer": header.tau_infer,
                "tau_train": header.tau_train,
                "use_gap": bundle.manifest.get("use_gap"),
                "numerical_hazard_threshold": header.numerical_hazard_threshold,
            },
            "graph": None
            if tail is None
            else {"tau_infer": tail.tau_infer, "tau_train": tail.tau_train},
        },
        "fallback_policy_id": bundle.manifest.get("fallback_policy_id"),
        "created_utc": bundle.manifest.get("created_utc"),
        "package": bundle.manifest.get("package"),
        "warnings": list(runner.warnings),
    }


def cmd_validate(args: argparse.Namespace) -> int:
    """Exit 0 when the bundle is valid and loadable, 1 with the reasons when not."""
    try:
        runner = _load(args)
    except BundleError as exc:
        if args.json:
            report = {
                "valid": False,
                "bundle": args.bundle,
                "errors": [exc.as_dict()],
                "warnings": [],
            }
            sys.stdout.buffer.write(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
        else:
            print(f"invalid: {args.bundle}: {exc}", file=sys.stderr)
        return EXIT_INVALID
    info = describe(runner)
    if args.json:
        report = {"valid": True, "errors": [], **info}
        sys.stdout.buffer.write(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        verified = "verified" if info["verified"] else "UNVERIFIED legacy"
        print(
            f"valid: {args.bundle} (schema {info['schema_version']}, {verified}, "
            f"adapter {info['adapter']}, manifest sha256 {info['manifest_sha256']})"
        )
        for warning in info["warnings"]:
            print(f"warning: {warning}")
    return EXIT_OK


def cmd_inspect(args: argparse.Namespace) -> int:
    """Print what the bundle takes, gives and promises."""
    info = describe(_load(args))
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(info, option=orjson.OPT_INDENT_2) + b"\n")
        return EXIT_OK
    print(_render_text(info))
    return EXIT_OK


def _render_text(info: dict[str, Any]) -> str:
    meta = info["thresholds"]["metadata"]
    graph = info["thresholds"]["graph"]
    lines = [
        f"bundle           {info['bundle']}",
        f"manifest sha256  {info['manifest_sha256']}",
        f"schema           {info['schema_version']} "
        f"({'verified' if info['verified'] else 'UNVERIFIED legacy'}), "
        f"strict schema {info['strict_inference_schema_version']}",
        f"adapter          {info['adapter']} (provenance "
        f"{'available' if info['provenance_available'] else 'UNAVAILABLE'})",
        f"model            {info['model_file']} {info['model_bytes']} bytes sha256 "
        f"{info['model_sha256']}",
    ]
    lines += [
        f"external data    {e['file']} {e['bytes']} bytes sha256 {e['sha256']} "
        "(NOT covered by the manifest)"
        for e in info["external_data"]
    ]
    lines.append("inputs")
    lines += [f"  {s['name']:<16} {s['dtype']:<8} {s['shape']}" for s in info["inputs"]]
    lines.append(f"outputs          {', '.join(info['outputs'])}")
    lines.append(
        f"tau_infer        {meta['tau_infer']!r} (metadata)"
        + (f", {graph['tau_infer']!r} (graph)" if graph else "")
    )
    lines.append(
        f"tau_train        {meta['tau_train']!r} (metadata)"
        + (f", {graph['tau_train']!r} (graph)" if graph else "")
        + f", use_gap {meta['use_gap']}"
    )
    lines.append(f"fallback policy  {info['fallback_policy_id']}")
    lines += [f"warning          {w}" for w in info["warnings"]]
    return "\n".join(lines)


def _read_inputs(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"--inputs {path}: expected a readable .npz file, found: {exc}") from exc


def _concat(parts: list[StrictResult]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([getattr(p, name) for p in parts], axis=0) for name in FIELDS}


def cmd_run(args: argparse.Namespace) -> int:
    """Score IN.npz; OUT.npz holds exactly the six fields, one row per input row."""
    if args.chunk_rows is not None and args.chunk_rows < 1:
        raise ConfigError(f"--chunk-rows: expected an integer >= 1, found {args.chunk_rows}")
    runner = _load(args)
    arrays = _read_inputs(args.inputs)
    sizes = {name: a.shape[0] if a.ndim else None for name, a in arrays.items()}
    rows = next(iter(sizes.values()), 0) or 0
    if len(set(sizes.values())) > 1:
        raise InputMismatchError(f"inputs: expected the same number of rows, found {sizes}")
    chunk = args.chunk_rows or max(rows, 1)
    parts = [
        runner.run({n: a[start : start + chunk] for n, a in arrays.items()})
        for start in range(0, rows, chunk)
    ] or [runner.run(arrays)]
    out = _concat(parts)
    _write_npz_atomically(args.out, out)
    bottoms = int(out["bottom_mask"].sum())
    print(
        f"scored {rows} rows with {runner.adapter.name}: {bottoms} bottom entries, "
        f"{int(out['gap_mask'].sum())} gap entries, provenance "
        f"{'available' if runner.adapter.provenance_available else 'UNAVAILABLE'} -> {args.out}",
        file=sys.stderr,
    )
    for warning in runner.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return EXIT_OK


def _write_npz_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
