"""Build small bundles on the fly for the cases zeroproofml never exports on purpose."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import onnx
from onnx import TensorProto, helper

from tests.conftest import FIXTURES

BASE_META = FIXTURES / "v061_scalar_rational" / "bundle" / "metadata.json"


def write_bundle(
    directory: Path,
    model: onnx.ModelProto | bytes,
    *,
    schema: int = 2,
    strict: int = 2,
    **overrides: Any,
) -> Path:
    """Write model.onnx and a manifest derived from a real 0.6.1 one, sized and hashed."""
    directory.mkdir(parents=True, exist_ok=True)
    raw = model if isinstance(model, bytes) else model.SerializeToString()
    (directory / "model.onnx").write_bytes(raw)
    meta = json.loads(BASE_META.read_text())
    for key in (
        "inputs",
        "outputs",
        "batch_axis_semantics",
        "strict_inference_fields",
        "inference_output_schema",
    ):
        meta.pop(key, None)
    graph = onnx.load_from_string(raw).graph if isinstance(model, bytes) else model.graph
    meta["input_names"] = [
        i.name for i in graph.input if i.name not in {init.name for init in graph.initializer}
    ]
    meta["strict_inference_schema_version"] = strict
    if strict == 1:
        meta["output_names"] = ["decoded", "bottom_mask", "gap_mask"]
        meta["strict_inference_exports"] = "merged_only_masks"
        meta["mask_semantics"]["output_contract"] = "merged_only_masks"
    meta["model_bytes"] = len(raw)
    meta["model_sha256"] = hashlib.sha256(raw).hexdigest()
    if schema == 1:
        for key in ("schema_name", "schema_version", "model_bytes", "model_sha256"):
            meta.pop(key, None)
    meta.update(overrides)
    (directory / "metadata.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return directory


def identity_model(inputs: list[tuple[str, int]], outputs: list[str]) -> onnx.ModelProto:
    """A graph whose outputs are its inputs: lets a test dictate exactly what 'the model' says."""
    graph = helper.make_graph(
        [
            helper.make_node("Identity", [src], [dst])
            for (src, _), dst in zip(inputs, outputs, strict=True)
        ],
        "liar",
        [helper.make_tensor_value_info(name, kind, ["batch", 1]) for name, kind in inputs],
        [
            helper.make_tensor_value_info(dst, kind, ["batch", 1])
            for (_, kind), dst in zip(inputs, outputs, strict=True)
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)


SIX_OUTPUTS = [
    "decoded",
    "bottom_mask",
    "gap_mask",
    "fault_mask",
    "semantic_bottom_mask",
    "bottom_provenance",
]
LIAR_INPUTS = [
    ("d", TensorProto.FLOAT),
    ("b", TensorProto.BOOL),
    ("g", TensorProto.BOOL),
    ("f", TensorProto.BOOL),
    ("s", TensorProto.BOOL),
    ("c", TensorProto.INT64),
]


def free_width_bundle(directory: Path) -> Path:
    """The robotics bundle with its feature width declared free: the graph still needs 4.

    The decoder then accepts any width, and ONNX Runtime refuses other widths at run time:
    a model that fails on some inputs only, as bundles in the field do.
    """
    source = FIXTURES / "v061_reference_robotics_seed7" / "bundle"
    model = onnx.load(source / "model.onnx")
    width = model.graph.input[0].type.tensor_type.shape.dim[1]
    width.ClearField("dim_value")
    width.dim_param = "features"
    raw = model.SerializeToString()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.onnx").write_bytes(raw)
    meta = json.loads((source / "metadata.json").read_text())
    meta["model_bytes"] = len(raw)
    meta["model_sha256"] = hashlib.sha256(raw).hexdigest()
    (directory / "metadata.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return directory
