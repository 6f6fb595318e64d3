"""The validation list of contract section 4, as pure functions over the parsed manifest.

The checks run in zeroproofml's order, so the first failure reported is the one zeroproofml
would report. The file-system part of step 6 (symlinks, regular file) lives in the loader;
everything here is plain data in, a verdict out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from worker.bundle.manifest import METADATA_FILE
from worker.errors import BundleIntegrityError, BundleInvalidError

FORMAT = "zeroproofml_export_bundle"
SCHEMA_NAME = "zeroproofml_export_bundle_metadata"
REQUIRED_KEYS = (
    "format",
    "format_version",
    "model_file",
    "input_names",
    "output_names",
    "scm_decoding_mode",
    "tau_infer",
)
BASE_FIELDS = ("decoded", "bottom_mask", "gap_mask")
PROVENANCE_FIELDS = ("fault_mask", "semantic_bottom_mask", "bottom_provenance")
FIELDS_BY_STRICT_VERSION = {1: BASE_FIELDS, 2: BASE_FIELDS + PROVENANCE_FIELDS}
EXPORTS_BY_STRICT_VERSION = {
    1: ("merged_only_masks", "experimental_provenance_outputs"),
    2: ("stable_provenance_outputs",),
}
PROVENANCE_MODES = ("experimental", "off", "stable")
_SHA256 = re.compile(r"[0-9a-f]{64}")

_V2_OUTPUT_SCHEMA: dict[str, Any] = {
    "schema_name": "zeroproofml_inference_output_schema",
    "schema_version": 2,
    "representation": "split_masks_and_bottom_provenance",
    "base_fields": list(BASE_FIELDS),
    "extra_fields": list(PROVENANCE_FIELDS),
    "strict_inference_exports": "stable_provenance_outputs",
}
_V1_OUTPUT_SCHEMAS: dict[str, dict[str, Any]] = {
    "split_masks": {
        "schema_name": "zeroproofml_experimental_inference_split_masks",
        "schema_version": 1,
        "representation": "split_masks",
        "base_fields": list(BASE_FIELDS),
        "extra_fields": ["fault_mask", "semantic_bottom_mask"],
        "strict_inference_exports": "experimental_provenance_outputs",
    },
    "bottom_provenance": {
        "schema_name": "zeroproofml_experimental_inference_bottom_provenance",
        "schema_version": 1,
        "representation": "bottom_provenance",
        "base_fields": list(BASE_FIELDS),
        "extra_fields": ["bottom_provenance"],
        "strict_inference_exports": "experimental_provenance_outputs",
    },
}


def _invalid(
    field_name: str, expected: str, found: Any, hint: str | None = None
) -> BundleInvalidError:
    return BundleInvalidError(METADATA_FILE, field_name, expected, found, hint=hint)


@dataclass(frozen=True, slots=True)
class Header:
    """What steps 1-5 establish: the schema generation and the recorded thresholds."""

    schema_version: int
    tau_infer: float
    tau_train: float | None
    numerical_hazard_threshold: float | None


@dataclass(frozen=True, slots=True)
class Contract:
    """What steps 8-14 establish: the strict output contract the graph must honour."""

    strict_schema_version: int
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    input_dtypes: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


# --- steps 2-5 -------------------------------------------------------------------------------


def _as_int(value: Any, field_name: str, expected: str) -> int:
    """zeroproofml coerces with ``int()``, so ``"2"`` passes; we accept exactly what it accepts."""
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise _invalid(field_name, expected, value) from exc


def _threshold(value: Any, field_name: str) -> float:
    if isinstance(value, bool):
        raise _invalid(field_name, "a finite number > 0", value)
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise _invalid(field_name, "a finite number > 0", value) from exc
    if not math.isfinite(number) or number <= 0:
        hint = (
            "exact-zero denominators are bottom by the decode rule itself; tau must be > 0"
            if number == 0
            else None
        )
        raise _invalid(field_name, "a finite number > 0", value, hint)
    return number


def _hazard(meta: Mapping[str, Any], key: str) -> float | None:
    value = meta.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(key, "null or a real number >= 0", value)
    if not math.isfinite(value) or value < 0:
        raise _invalid(key, "null or a finite number >= 0", value)
    return float(value)


def check_header(meta: Mapping[str, Any]) -> Header:
    """Steps 2-5: required keys, format, decoding mode, schema declaration, thresholds."""
    missing = [key for key in REQUIRED_KEYS if key not in meta]
    if missing:
        raise _invalid(", ".join(missing), "present (required key)", "missing")
    if meta["format"] != FORMAT:
        raise _invalid("format", repr(FORMAT), meta["format"])
    if _as_int(meta["format_version"], "format_version", "1") != 1:
        raise _invalid("format_version", "1", meta["format_version"])
    if str(meta["scm_decoding_mode"]) != "strict":
        raise _invalid("scm_decoding_mode", "'strict'", meta["scm_decoding_mode"])

    has_name = meta.get("schema_name") is not None
    has_version = meta.get("schema_version") is not None
    if has_name != has_version:
        present = "schema_name" if has_name else "schema_version"
        raise _invalid("schema_name/schema_version", "both or neither", f"only {present}")
    schema_version = 1
    if has_name:
        if meta["schema_name"] != SCHEMA_NAME:
            raise _invalid("schema_name", repr(SCHEMA_NAME), meta["schema_name"])
        schema_version = _as_int(meta["schema_version"], "schema_version", "one of [1, 2]")
        if schema_version not in (1, 2):
            raise _invalid("schema_version", "one of [1, 2]", meta["schema_version"])

    tau_infer = _threshold(meta["tau_infer"], "tau_infer")
    tau_train = None
    if meta.get("tau_train") is not None:
        tau_train = _threshold(meta["tau_train"], "tau_train")
        if tau_train < tau_infer:
            raise _invalid(
                "tau_train",
                f">= tau_infer ({tau_infer!r})",
                meta["tau_train"],
                "a smaller training threshold would leave a fail-open gap",
            )
    hazard = _hazard(meta, "numerical_hazard_threshold")
    fault = _hazard(meta, "provenance_fault_threshold")
    if hazard is not None and fault is not None and hazard != fault:
        raise _invalid(
            "provenance_fault_threshold",
            f"equal to numerical_hazard_threshold ({hazard!r})",
            fault,
        )
    return Header(schema_version, tau_infer, tau_train, hazard if hazard is not None else fault)


# --- step 6 (the part that needs no file system) ----------------------------------------------


def check_model_file_name(meta: Mapping[str, Any]) -> str:
    """Step 6, lexical part: a relative path that cannot leave the bundle directory."""
    name = meta["model_file"]
    if not isinstance(name, str) or not name:
        raise _invalid("model_file", "a non-empty relative path", name)
    if "\x00" in name:
        raise _invalid("model_file", "a path without NUL bytes", name)
    windows = PureWindowsPath(name)
    if PurePosixPath(name).is_absolute() or windows.drive or windows.root:
        raise _invalid(
            "model_file",
            "a path relative to the bundle",
            name,
            "absolute or drive-qualified paths are prohibited",
        )
    if ".." in re.split(r"[\\/]", name):
        raise _invalid(
            "model_file", "a path inside the bundle", name, "parent traversal ('..') is prohibited"
        )
    return name


# --- step 7 ---------------------------------------------------------------------------------


def check_integrity(
    meta: Mapping[str, Any], header: Header, model_name: str, model: bytes, model_sha256: str
) -> None:
    """Step 7: for schema >= 2, the recorded size and SHA-256 must match the bytes we hold."""
    if header.schema_version < 2:
        return
    missing = [key for key in ("model_sha256", "model_bytes") if key not in meta]
    if missing:
        raise _invalid(", ".join(missing), "present for schema_version >= 2", "missing")
    size = meta["model_bytes"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise _invalid("model_bytes", "a JSON integer >= 0", size)
    recorded = meta["model_sha256"]
    if not isinstance(recorded, str) or not _SHA256.fullmatch(recorded.strip()):
        raise _invalid("model_sha256", "64 lowercase hex characters", recorded)
    if size != len(model):
        raise BundleIntegrityError(
            model_name, "size (metadata.json model_bytes)", f"{size} bytes", f"{len(model)} bytes"
        )
    if recorded.strip() != model_sha256:
        raise BundleIntegrityError(
            model_name, "sha256 (metadata.json model_sha256)", recorded.strip(), model_sha256
        )


# --- steps 8-14 -----------------------------------------------------------------------------


def _strict_version(meta: Mapping[str, Any]) -> int:
    value = meta.get("strict_inference_schema_version")
    if value is None:
        return 1
    version = _as_int(value, "strict_inference_schema_version", "one of [1, 2]")
    if version not in (1, 2):
        raise _invalid("strict_inference_schema_version", "one of [1, 2]", value)
    return version


def _check_output_schema(meta: Mapping[str, Any], strict: int, warnings: list[str]) -> None:
    key = "inference_output_schema"
    payload = meta.get(key)
    if payload is None and meta.get("experimental_inference_output_schema") is not None:
        key = "experimental_inference_output_schema"
        payload = meta[key]
        warnings.append(f"{METADATA_FILE}: {key} is deprecated (zeroproofml 0.5.1 layout)")
    if payload is None:
        return
    if not isinstance(payload, Mapping):
        raise _invalid(key, "an object", payload)
    expected = _V2_OUTPUT_SCHEMA
    if strict == 1 and key == "experimental_inference_output_schema":
        expected = _V1_OUTPUT_SCHEMAS.get(
            str(payload.get("representation")), _V1_OUTPUT_SCHEMAS["split_masks"]
        )
    for sub, want in expected.items():
        got = payload.get(sub)
        if got != want:
            raise _invalid(f"{key}.{sub}", repr(want), got)


def _check_specs(meta: Mapping[str, Any], kind: str, names: Sequence[str]) -> dict[str, str]:
    """Step 11: ``inputs``/``outputs`` lists, well formed and in ``*_names`` order."""
    specs = meta.get(kind)
    if specs is None or not names:
        return {}
    if not isinstance(specs, list):
        raise _invalid(kind, "a list of {name, shape, dtype} objects", specs)
    dtypes: dict[str, str] = {}
    for i, spec in enumerate(specs):
        where = f"{kind}[{i}]"
        if not isinstance(spec, Mapping):
            raise _invalid(where, "an object", spec)
        if not isinstance(spec.get("name"), str):
            raise _invalid(f"{where}.name", "a string", spec.get("name"))
        shape = spec.get("shape")
        if not isinstance(shape, list):
            raise _invalid(f"{where}.shape", "a list of dims", shape)
        for j, dim in enumerate(shape):
            ok = (isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0) or (
                isinstance(dim, str) and dim != ""
            )
            if not ok:
                raise _invalid(f"{where}.shape[{j}]", "an int >= 0 or a non-empty string", dim)
        if not isinstance(spec.get("dtype"), str):
            raise _invalid(f"{where}.dtype", "a dtype name string", spec.get("dtype"))
        dtypes[spec["name"]] = spec["dtype"]
    got = [spec["name"] for spec in specs]
    if got != list(names):
        raise _invalid(kind, f"names in {kind[:-1]}_names order {list(names)}", got)
    return dtypes


def _check_names(meta: Mapping[str, Any], key: str) -> tuple[str, ...]:
    names = meta[key]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _invalid(key, "a list of strings", names)
    return tuple(names)


def _check_batch_axes(
    meta: Mapping[str, Any], inputs: Sequence[str], outputs: Sequence[str]
) -> None:
    axes = meta.get("batch_axis_semantics")
    if axes is None:
        return
    key = "batch_axis_semantics"
    if not isinstance(axes, Mapping):
        raise _invalid(key, "an object", axes)
    if not isinstance(axes.get("axis_name"), str) or not axes["axis_name"]:
        raise _invalid(f"{key}.axis_name", "a non-empty string", axes.get("axis_name"))
    for sub, known in (("input_axes", inputs), ("output_axes", outputs)):
        table = axes.get(sub)
        if not isinstance(table, Mapping):
            raise _invalid(f"{key}.{sub}", "an object", table)
        for name, axis in table.items():
            if name not in known:
                raise _invalid(f"{key}.{sub}", f"tensor names from {list(known)}", name)
            if isinstance(axis, bool) or not isinstance(axis, int) or axis < 0:
                raise _invalid(f"{key}.{sub}.{name}", "an int >= 0", axis)


def _check_optional_types(meta: Mapping[str, Any]) -> None:
    for key in ("preprocessing_contract_id", "postprocessing_contract_id"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            raise _invalid(key, "null or a string", meta[key])
    norm = meta.get("normalization_metadata")
    if norm is not None and not isinstance(norm, Mapping):
        raise _invalid("normalization_metadata", "null or an object", norm)


def _check_mask_semantics(meta: Mapping[str, Any], strict: int) -> None:
    allowed = EXPORTS_BY_STRICT_VERSION[strict]
    semantics = meta.get("mask_semantics")
    exports = meta.get("strict_inference_exports")
    if semantics is not None:
        key = "mask_semantics"
        if not isinstance(semantics, Mapping):
            raise _invalid(key, "an object", semantics)
        contract = semantics.get("output_contract")
        if not isinstance(contract, str) or contract not in allowed:
            raise _invalid(
                f"{key}.output_contract",
                f"one of {list(allowed)} for strict_inference_schema_version={strict}",
                contract,
            )
        if exports is not None and contract != exports:
            raise _invalid(
                f"{key}.output_contract",
                f"equal to strict_inference_exports ({exports!r})",
                contract,
            )
        if semantics.get("provenance_mode") not in PROVENANCE_MODES:
            raise _invalid(
                f"{key}.provenance_mode",
                f"one of {list(PROVENANCE_MODES)}",
                semantics.get("provenance_mode"),
            )
        representation = semantics.get("provenance_representation")
        if representation is not None and not isinstance(representation, str):
            raise _invalid(f"{key}.provenance_representation", "null or a string", representation)
        for sub in ("bottom_mask", "gap_mask"):
            label = semantics.get(sub)
            if not isinstance(label, str) or not label:
                raise _invalid(f"{key}.{sub}", "a non-empty string", label)
    if exports is not None and exports not in allowed:
        raise _invalid(
            "strict_inference_exports",
            f"one of {list(allowed)} for strict_inference_schema_version={strict}",
            exports,
        )


def check_contract(meta: Mapping[str, Any], header: Header) -> Contract:
    """Steps 8-14: the strict schema, field lists, specs, axes and mask semantics."""
    warnings: list[str] = []
    strict = _strict_version(meta)
    expected_fields = list(FIELDS_BY_STRICT_VERSION[strict])
    fields = meta.get("strict_inference_fields")
    if fields is not None and fields != expected_fields:
        raise _invalid("strict_inference_fields", repr(expected_fields), fields)
    _check_output_schema(meta, strict, warnings)
    inputs = _check_names(meta, "input_names")
    outputs = _check_names(meta, "output_names")
    input_dtypes = _check_specs(meta, "inputs", inputs)
    _check_specs(meta, "outputs", outputs)
    _check_batch_axes(meta, inputs, outputs)
    _check_optional_types(meta)
    _check_mask_semantics(meta, strict)
    if list(outputs) != expected_fields:
        raise _invalid(
            "output_names",
            f"{expected_fields} for strict_inference_schema_version={strict}",
            list(outputs),
        )

    use_gap = meta.get("use_gap")
    gap_on = header.tau_train is not None and header.tau_train > header.tau_infer
    if isinstance(use_gap, bool) and use_gap != gap_on:
        warnings.append(
            f"{METADATA_FILE}: use_gap is {use_gap} but tau_train={header.tau_train!r} and "
            f"tau_infer={header.tau_infer!r} say {gap_on}; zeroproofml does not cross-check it"
        )
    return Contract(strict, inputs, outputs, input_dtypes, tuple(warnings))
