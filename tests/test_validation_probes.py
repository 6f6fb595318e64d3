"""Reproduce every outcome in validation_probes/probes.json: verdicts and manifest digests.

probes.json records what zeroproofml 0.6.1 decided for 40 mutations of a v2 bundle. Each
mutation is re-applied here from its description; the manifest digest proves we applied the
same mutation, then our verdict must equal zeroproofml's in all three loading modes.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES
from worker.bundle import manifest_sha256, parse_manifest, verify_bundle
from worker.errors import BundleError

PROBES = json.loads((FIXTURES / "validation_probes" / "probes.json").read_text())
UNMODIFIED = PROBES["unmodified_v2_manifest_sha256"]

Meta = dict[str, Any]
Mutation = Callable[[Path, Meta], None]


def _set(key: str, value: Any) -> Mutation:
    def apply(_: Path, meta: Meta) -> None:
        meta[key] = value

    return apply


def _drop(*keys: str) -> Mutation:
    def apply(_: Path, meta: Meta) -> None:
        for key in keys:
            del meta[key]

    return apply


def _flip_last_byte(bundle: Path, _: Meta) -> None:
    model = bundle / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF
    model.write_bytes(bytes(data))


def _sidecar(content: bytes | None) -> Mutation:
    def apply(bundle: Path, _: Meta) -> None:
        sidecar = bundle / "metadata.sha256"
        if content is None:
            sidecar.unlink()
        else:
            sidecar.write_bytes(content)

    return apply


def _nested(path: tuple[str | int, ...], value: Any) -> Mutation:
    def apply(_: Path, meta: Meta) -> None:
        target: Any = meta
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return apply


def _rename_input(_: Path, meta: Meta) -> None:
    meta["input_names"] = ["x"]
    meta["inputs"][0]["name"] = "x"
    meta["batch_axis_semantics"]["input_axes"] = {"x": 0}


def _combine(*steps: Mutation) -> Mutation:
    def apply(bundle: Path, meta: Meta) -> None:
        for step in steps:
            step(bundle, meta)

    return apply


V2_OUTPUT_SCHEMA = {
    "schema_name": "zeroproofml_inference_output_schema",
    "schema_version": 1,
    "representation": "split_masks_and_bottom_provenance",
    "base_fields": ["decoded", "bottom_mask", "gap_mask"],
    "extra_fields": ["fault_mask", "semantic_bottom_mask", "bottom_provenance"],
    "strict_inference_exports": "stable_provenance_outputs",
}
SIX = [
    "decoded",
    "bottom_mask",
    "gap_mask",
    "fault_mask",
    "semantic_bottom_mask",
    "bottom_provenance",
]

# mutation description (as in probes.json) -> how to apply it; None = leave metadata as is.
MUTATIONS: dict[str, Mutation | None] = {
    "unmodified v2 bundle": None,
    "unmodified v1 legacy bundle (0.5.1)": None,
    "delete metadata.sha256 sidecar": _sidecar(None),
    "garbage in metadata.sha256 sidecar": _sidecar(b"not a digest at all\n"),
    "flip last byte of model.onnx": _flip_last_byte,
    "remove model_sha256": _drop("model_sha256"),
    "uppercase model_sha256": _nested(
        ("model_sha256",), "4638E421C1096D1694BEE7EEC4FCEB5CC89A5EA3CFAB75FC312CB1E8ADE1217A"
    ),
    "model_bytes as float": _set("model_bytes", 4790.0),
    "model_bytes off by one": _set("model_bytes", 4791),
    "schema_version as string '2'": _set("schema_version", "2"),
    "schema_version 3": _set("schema_version", 3),
    "schema_name removed (schema_version kept)": _drop("schema_name"),
    "schema_name and schema_version removed": _drop("schema_name", "schema_version"),
    "schema_version 1 but keep sha fields": _set("schema_version", 1),
    "format_version 2": _set("format_version", 2),
    "format wrong": _set("format", "other"),
    "scm_decoding_mode 'relaxed'": _set("scm_decoding_mode", "relaxed"),
    "tau_infer 0": _set("tau_infer", 0.0),
    "tau_infer as string '0.001'": _set("tau_infer", "0.001"),
    "tau_train < tau_infer": _set("tau_train", 0.0001),
    "tau_train == tau_infer": _set("tau_train", 0.001),
    "tau_train null": _set("tau_train", None),
    "use_gap false while tau_train > tau_infer (not cross-checked)": _set("use_gap", False),
    "output_names reordered": _set("output_names", SIX[::-1]),
    "output_names only 3 fields (strict schema 2)": _set("output_names", SIX[:3]),
    "strict_inference_schema_version removed (defaults to 1 -> expects 3 outputs)": _drop(
        "strict_inference_schema_version"
    ),
    "strict_inference_fields removed": _drop("strict_inference_fields"),
    "strict_inference_exports 'merged_only_masks' with strict schema 2": _set(
        "strict_inference_exports", "merged_only_masks"
    ),
    "mask_semantics.output_contract mismatch": _nested(
        ("mask_semantics", "output_contract"), "merged_only_masks"
    ),
    "mask_semantics.provenance_mode 'bogus'": _nested(
        ("mask_semantics", "provenance_mode"), "bogus"
    ),
    "inputs[0].name renamed (order/name check vs input_names)": _nested(("inputs", 0, "name"), "x"),
    "inputs[0].shape has negative dim": _nested(("inputs", 0, "shape", 1), -1),
    "batch_axis_semantics unknown tensor": _nested(
        ("batch_axis_semantics", "input_axes", "nope"), 0
    ),
    "input_names renamed but graph unchanged": _rename_input,
    "model_file '../model.onnx'": _set("model_file", "../model.onnx"),
    "model_file absolute path": _set("model_file", "/etc/passwd"),
    "unknown extra top-level key": _set("x_unknown_extra_key", True),
    "numerical_hazard_threshold != provenance_fault_threshold": _combine(
        _set("numerical_hazard_threshold", 0.001), _set("provenance_fault_threshold", 0.002)
    ),
    "inference_output_schema with wrong schema_version": _set(
        "inference_output_schema", V2_OUTPUT_SCHEMA
    ),
    "legacy experimental_inference_output_schema key on a v2 bundle": _set(
        "experimental_inference_output_schema", {"representation": "split_masks"}
    ),
}
# Where the exact value zeroproofml's generator used is not recoverable from the description,
# only the verdicts are compared (the digest cannot match a different value).
DIGEST_UNKNOWN = {"unknown extra top-level key"}


def _prepare(tmp_path: Path, probe: dict[str, Any]) -> Path:
    bundle = tmp_path / "bundle"
    shutil.copytree(FIXTURES / probe["base"] / "bundle", bundle)
    mutation = probe["mutation"]
    meta_path = bundle / "metadata.json"
    if mutation.startswith("reformat metadata.json"):
        meta = json.loads(meta_path.read_text())
        keys = sorted(meta, reverse=True)
        meta_path.write_text(json.dumps({k: meta[k] for k in keys}, indent=4))
    elif mutation == "NaN literal in metadata":
        meta_path.write_text(meta_path.read_text().replace('"tau_train": 0.01', '"tau_train": NaN'))
    else:
        apply = MUTATIONS[mutation]
        if apply is not None:
            meta = json.loads(meta_path.read_text())
            apply(bundle, meta)
            meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return bundle


def _verdict(bundle: Path, **kwargs: Any) -> str:
    try:
        verify_bundle(bundle, **kwargs)
    except BundleError as exc:
        return f"refused: {exc}"
    return "ok"


@pytest.mark.parametrize("probe", PROBES["probes"], ids=[p["mutation"] for p in PROBES["probes"]])
class TestValidationProbes:
    """Each probe: same digest, same accept/refuse verdict as zeroproofml in every mode."""

    def test_manifest_digest(self, tmp_path: Path, probe: dict[str, Any]) -> None:
        """The digest of the mutated manifest equals zeroproofml's (or both fail to parse)."""
        bundle = _prepare(tmp_path, probe)
        expected = probe["manifest_sha256"]
        if expected.startswith("ValueError"):
            with pytest.raises(BundleError):
                parse_manifest((bundle / "metadata.json").read_bytes())
            return
        digest = manifest_sha256(parse_manifest((bundle / "metadata.json").read_bytes()))
        if probe["mutation"] in DIGEST_UNKNOWN:
            assert digest != UNMODIFIED
        else:
            assert digest == expected

    @pytest.mark.parametrize(
        ("column", "kwargs"),
        [
            (
                "validate_bundle_descriptor(allow_unverified_legacy=True)",
                {"allow_unverified_legacy": True},
            ),
            ("load_onnx_runtime_bundle() default", {}),
            (
                "load_onnx_runtime_bundle(expected_bundle_digest=<digest of unmodified v2 bundle>)",
                {"expected_digest": UNMODIFIED},
            ),
        ],
    )
    def test_verdict(
        self, tmp_path: Path, probe: dict[str, Any], column: str, kwargs: dict[str, Any]
    ) -> None:
        """Accepted exactly when zeroproofml accepted, refused exactly when it refused."""
        bundle = _prepare(tmp_path, probe)
        reference_ok = probe[column].startswith("ok")
        ours = _verdict(bundle, **kwargs)
        assert (ours == "ok") == reference_ok, f"zeroproofml: {probe[column]!r}; ours: {ours!r}"
