"""Reading exported ONNX graphs: external data, and the strict-decode tail of schema-v1 graphs.

A zeroproofml graph ends in ``decoded = Where(bottom, NaN, Div(P, Where(bottom0, 1, Q')))``
where ``Q'`` is Q or ``Unsqueeze(Q)`` for a shared denominator, and the thresholds are scalar
constants compared against ``Abs(Q)``. For 3-output (schema v1) graphs we find that tail, add
P and Q as graph outputs and re-derive the 0.6.1 masks with real provenance.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    # onnx pulls in ml_dtypes (about a second at import): functions import it when they run,
    # so that commands which never read a graph (fleet, solver, events, dlq) start fast.
    import onnx

_PASS_THROUGH = {"Identity", "Cast"}


@dataclass(frozen=True, slots=True)
class ExternalFile:
    """A file of external tensor data that the bundle manifest does not cover."""

    name: str
    size: int
    sha256: str
    tensors: int


@dataclass(frozen=True, slots=True)
class StrictTail:
    """Where P and Q live in a 3-output graph, and the thresholds the graph itself applies."""

    numerator: str
    denominator: str
    tau_infer: float
    tau_train: float | None


def parse_model(raw: bytes) -> onnx.ModelProto:
    """Parse ONNX bytes; raises ``onnx``'s DecodeError-like exceptions on garbage."""
    import onnx

    model = onnx.ModelProto()
    model.ParseFromString(raw)
    return model


def inline_external_data(
    model: onnx.ModelProto, read_file: Callable[[str], bytes]
) -> list[ExternalFile]:
    """Move external tensor data into the model, reading each file once through ``read_file``.

    ``read_file`` is the loader's contained reader: it refuses names that leave the bundle.
    """
    import onnx

    cache: dict[str, bytes] = {}
    counts: dict[str, int] = {}
    for tensor in _all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        if location not in cache:
            cache[location] = read_file(location)
        blob = cache[location]
        offset = int(info.get("offset", 0))
        length = int(info["length"]) if "length" in info else len(blob) - offset
        if offset < 0 or length < 0 or offset + length > len(blob):
            raise ValueError(
                f"tensor {tensor.name!r} wants bytes {offset}..{offset + length} of {location!r}, "
                f"which has {len(blob)}"
            )
        tensor.raw_data = blob[offset : offset + length]
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT
        counts[location] = counts.get(location, 0) + 1
    return [
        ExternalFile(name, len(blob), hashlib.sha256(blob).hexdigest(), counts[name])
        for name, blob in cache.items()
    ]


def _all_tensors(model: onnx.ModelProto) -> Iterable[onnx.TensorProto]:
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        yield from graph.initializer
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors
                if attr.HasField("g"):
                    graphs.append(attr.g)
                graphs.extend(attr.graphs)


class _Graph:
    """Just enough of a graph index to walk producers and fold scalar constants."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        from onnx import numpy_helper

        self.producer = {out: node for node in graph.node for out in node.output}
        self.consts: dict[str, np.ndarray] = {
            init.name: numpy_helper.to_array(init) for init in graph.initializer
        }
        for node in graph.node:
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value":
                        self.consts[node.output[0]] = numpy_helper.to_array(attr.t)
                    elif attr.name == "value_float":
                        self.consts[node.output[0]] = np.asarray(attr.f, dtype=np.float32)
        self.nodes = list(graph.node)

    def source(self, name: str) -> str:
        """Skip Identity/Cast hops that exporters like to insert."""
        node = self.producer.get(name)
        while node is not None and node.op_type in _PASS_THROUGH and node.input:
            name = node.input[0]
            node = self.producer.get(name)
        return name

    def op(self, name: str) -> onnx.NodeProto | None:
        return self.producer.get(self.source(name))

    def scalar(self, name: str) -> float | None:
        """A constant folded through Expand/ConstantOfShape-free scalar paths, else None."""
        value = self.consts.get(self.source(name))
        if value is None or value.size != 1:
            return None
        return float(value.reshape(()))

    def ancestors(self, name: str) -> set[str]:
        seen: set[str] = set()
        stack = [name]
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            node = self.producer.get(current)
            if node is not None:
                stack.extend(i for i in node.input if i)
        return seen


def find_strict_tail(model: onnx.ModelProto) -> StrictTail | None:
    """Locate P, Q and the applied thresholds in a zeroproofml decode tail; None if unsure."""
    g = _Graph(model.graph)
    outputs = {o.name for o in model.graph.output}
    if not {"decoded", "bottom_mask", "gap_mask"} <= outputs:
        return None
    final = g.producer.get("decoded")
    if final is None or final.op_type != "Where" or len(final.input) != 3:
        return None
    div = g.op(final.input[2])
    if div is None or div.op_type != "Div":
        return None
    guard = g.op(div.input[1])
    if guard is None or guard.op_type != "Where":
        return None
    numerator = g.source(div.input[0])
    denominator = g.source(guard.input[2])
    squeeze = g.producer.get(denominator)
    if squeeze is not None and squeeze.op_type == "Unsqueeze":
        denominator = g.source(squeeze.input[0])

    abs_outputs = {
        node.output[0]
        for node in g.nodes
        if node.op_type == "Abs" and g.source(node.input[0]) == denominator
    }
    if not abs_outputs:
        return None
    bottom_anc = g.ancestors("bottom_mask")
    gap_anc = g.ancestors("gap_mask")
    infer: set[float] = set()
    train: set[float] = set()
    for node in g.nodes:
        if node.op_type != "Less" or g.source(node.input[0]) not in abs_outputs:
            continue
        value = g.scalar(node.input[1])
        if value is None:
            return None
        if node.output[0] in bottom_anc:
            infer.add(value)
        elif node.output[0] in gap_anc:
            train.add(value)
    if len(infer) != 1 or len(train) > 1:
        return None
    tau_infer = infer.pop()
    tau_train = train.pop() if train else None
    if tau_infer <= 0 or (tau_train is not None and tau_train <= tau_infer):
        return None
    return StrictTail(numerator, denominator, tau_infer, tau_train)


def expose_outputs(model: onnx.ModelProto, names: Iterable[str], elem_type: int) -> None:
    """Append intermediate tensors as graph outputs so a session can return them."""
    import onnx

    existing = {o.name for o in model.graph.output}
    for name in names:
        if name not in existing:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, elem_type, None))
