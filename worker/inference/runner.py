"""The ONNX Runtime shell: build a session from verified bytes, feed batches, adapt outputs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort
import structlog

from worker.bundle import graph as graph_mod
from worker.bundle.loader import VerifiedBundle
from worker.errors import BundleInvalidError, InputMismatchError, ModelLoadError
from worker.inference.adapters import (
    Adapter,
    ContractViolationError,
    FailClosedV1,
    PassthroughV2,
    RecoveredV1,
)
from worker.inference.result import FIELDS, StrictResult

log = structlog.get_logger("worker.inference")

_ORT_TYPES: dict[str, np.dtype[Any]] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(double)": np.dtype(np.float64),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(bool)": np.dtype(np.bool_),
}


@dataclass(frozen=True, slots=True)
class InputSpec:
    """One model input as the graph declares it; the metadata name maps onto the graph name."""

    name: str
    graph_name: str
    dtype: np.dtype[Any]
    shape: tuple[int | str | None, ...]

    def describe(self) -> str:
        dims = ", ".join("batch" if i == 0 else str(d) for i, d in enumerate(self.shape))
        return f"({dims}) {self.dtype.name}"


def choose_adapter(bundle: VerifiedBundle) -> tuple[Adapter, graph_mod.StrictTail | None]:
    """Pick the adapter from the graph's outputs and the strict schema, not schema_version."""
    graph_outputs = [o.name for o in bundle.model.graph.output]
    wanted = list(bundle.contract.output_names)
    missing = [name for name in wanted if name not in graph_outputs]
    if missing:
        raise BundleInvalidError(
            bundle.model_file,
            "graph outputs",
            f"outputs named {wanted} (output_names)",
            graph_outputs,
        )
    if bundle.contract.strict_schema_version >= 2:
        return PassthroughV2(), None
    if any(name in graph_outputs for name in FIELDS[3:]):
        raise BundleInvalidError(
            bundle.model_file,
            "graph outputs",
            "3 outputs for strict_inference_schema_version 1",
            graph_outputs,
        )
    tail = graph_mod.find_strict_tail(bundle.model)
    if tail is None:
        return FailClosedV1(), None
    return RecoveredV1(tail.numerator, tail.denominator, tail.tau_infer, tail.tau_train), tail


def _session_options(intra_op_threads: int | None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    if intra_op_threads:
        options.intra_op_num_threads = intra_op_threads
    # ONNX Runtime's pool threads spin after each call by default. Between micro-batches that
    # burns a core the consume/produce loop and the broker need (measured: on 2 cores the
    # spinning took more CPU than the loop). Not spinning changes no arithmetic.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # Fatal only: a refused batch is an exception we report (an inference_error dead letter,
    # one structured log line per batch); ONNX Runtime's own line per failed run would be
    # unstructured stderr, once per bisection step.
    options.log_severity_level = 4
    return options


class BundleRunner:
    """Runs batches through a verified bundle and returns the stable strict contract."""

    def __init__(
        self,
        bundle: VerifiedBundle,
        *,
        intra_op_threads: int | None = None,
        capture_q: bool = False,
    ) -> None:
        self.bundle = bundle
        self.adapter, self.tail = choose_adapter(bundle)
        # Replays want |Q| per sample (for tau sweeps); any graph whose tail we read has it.
        self.q_tail = (self.tail or graph_mod.find_strict_tail(bundle.model)) if capture_q else None
        model_bytes = self._model_bytes_for_session()
        try:
            self.session = ort.InferenceSession(
                model_bytes,
                sess_options=_session_options(intra_op_threads),
                providers=["CPUExecutionProvider"],
            )
        except Exception as exc:  # onnxruntime raises several unrelated types
            raise ModelLoadError(
                bundle.model_file,
                "(model)",
                "a model ONNX Runtime can load",
                f"{type(exc).__name__}: {exc}",
            ) from exc
        self.inputs = self._input_specs()
        self._fetch = list(self.adapter.fetch)
        self._q_index: int | None = None
        if self.q_tail is not None:
            if self.q_tail.denominator not in self._fetch:
                self._fetch.append(self.q_tail.denominator)
            self._q_index = self._fetch.index(self.q_tail.denominator)

    def _model_bytes_for_session(self) -> bytes:
        """The verified bytes as they are, unless we had to inline data or expose P and Q."""
        tail = self.tail or self.q_tail
        if tail is None and not self.bundle.external_files:
            return self.bundle.model_bytes
        import onnx  # lazily, as in worker.bundle.graph: it costs a second at import

        model = onnx.ModelProto()
        model.CopyFrom(self.bundle.model)
        if tail is not None:
            decoded = next(o for o in model.graph.output if o.name == "decoded")
            graph_mod.expose_outputs(
                model,
                (tail.numerator, tail.denominator),
                decoded.type.tensor_type.elem_type,
            )
        serialized: bytes = model.SerializeToString()
        return serialized

    def _input_specs(self) -> tuple[InputSpec, ...]:
        graph_inputs = self.session.get_inputs()
        names = self.bundle.contract.input_names
        if len(names) != len(graph_inputs):
            raise BundleInvalidError(
                "metadata.json",
                "input_names",
                f"{len(graph_inputs)} names like the graph {[i.name for i in graph_inputs]}",
                list(names),
            )
        specs = []
        for name, node_arg in zip(names, graph_inputs, strict=True):
            dtype = _ORT_TYPES.get(node_arg.type)
            if dtype is None:
                raise ModelLoadError(
                    self.bundle.model_file,
                    f"input {node_arg.name!r} type",
                    "a numeric tensor type",
                    node_arg.type,
                )
            specs.append(InputSpec(name, node_arg.name, dtype, tuple(node_arg.shape)))
        return tuple(specs)

    @property
    def warnings(self) -> tuple[str, ...]:
        """Bundle warnings plus what only the loaded graph can tell."""
        found = list(self.bundle.warnings)
        for spec in self.inputs:
            if spec.name != spec.graph_name:
                found.append(
                    f"input_names: {spec.name!r} is called {spec.graph_name!r} in the "
                    "graph; fed by position"
                )
            declared = self.bundle.contract.input_dtypes.get(spec.name)
            if declared is not None and declared != spec.dtype.name:
                found.append(
                    f"inputs: {spec.name!r} declared {declared}, graph takes "
                    f"{spec.dtype.name}; the graph wins"
                )
        if self.tail is not None:
            meta_inf, meta_train = self.bundle.header.tau_infer, self.bundle.header.tau_train
            dtype = np.float32 if self._decoded_dtype() == np.float32 else np.float64
            if float(dtype(meta_inf)) != self.tail.tau_infer or (
                (meta_train is None) != (self.tail.tau_train is None)
                or (meta_train is not None and float(dtype(meta_train)) != self.tail.tau_train)
            ):
                found.append(
                    f"thresholds: metadata says tau_infer={meta_inf!r} tau_train="
                    f"{meta_train!r}, the graph applies {self.tail.tau_infer!r} / "
                    f"{self.tail.tau_train!r}; the graph wins"
                )
        return tuple(found)

    def _decoded_dtype(self) -> np.dtype[Any]:
        out = next(o for o in self.session.get_outputs() if o.name == "decoded")
        return _ORT_TYPES.get(out.type, np.dtype(np.float32))

    def prepare(self, arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Check names, ranks, fixed dims and batch sizes; cast to the graph's dtypes."""
        expected = [spec.name for spec in self.inputs]
        if set(arrays) != set(expected):
            raise InputMismatchError(
                f"inputs: expected arrays named {expected}, found {sorted(arrays)}"
            )
        feed: dict[str, np.ndarray] = {}
        batch: int | None = None
        for spec in self.inputs:
            array = np.asarray(arrays[spec.name])
            if array.dtype.kind not in "biuf":
                raise InputMismatchError(
                    f"input {spec.name!r}: expected {spec.describe()}, found dtype {array.dtype}"
                )
            if array.ndim != len(spec.shape) or any(
                isinstance(d, int) and d != got
                for d, got in zip(spec.shape[1:], array.shape[1:], strict=True)
            ):
                raise InputMismatchError(
                    f"input {spec.name!r}: expected shape {spec.describe()}, found {array.shape}"
                )
            if batch is not None and array.shape[0] != batch:
                raise InputMismatchError(
                    f"input {spec.name!r}: expected batch size {batch} like "
                    f"the other inputs, found {array.shape[0]}"
                )
            batch = array.shape[0] if array.ndim else None
            if array.dtype != spec.dtype:
                if not np.can_cast(array.dtype, spec.dtype, casting="same_kind") and not (
                    array.dtype.kind in "biu" and spec.dtype.kind == "f"
                ):
                    raise InputMismatchError(
                        f"input {spec.name!r}: expected {spec.describe()}, "
                        f"found dtype {array.dtype}"
                    )
                array = array.astype(spec.dtype)
            feed[spec.graph_name] = np.ascontiguousarray(array)
        return feed

    def run(self, arrays: Mapping[str, Any]) -> StrictResult:
        """Run one batch (any size from 0 up) and return the normalized result."""
        return self.run_with_q(arrays)[0]

    def run_with_q(self, arrays: Mapping[str, Any]) -> tuple[StrictResult, np.ndarray | None]:
        """Like :meth:`run`, plus the denominator Q when built with ``capture_q`` and readable.

        Odd batches are padded with a copy of their last row, and the copy's outputs dropped.
        ONNX Runtime's CPU matrix kernels round an unpaired last row differently (measured:
        the robotics MLP moved by one ulp on ~1 row in 6 at odd batch sizes); with every row
        paired, a sample's answer no longer depends on how the stream was cut into batches,
        so the worker and ``bundle run`` agree bit for bit.
        """
        feed = self.prepare(arrays)
        rows = next(iter(feed.values())).shape[0] if feed else 0
        if rows % 2:
            feed = {name: np.concatenate([a, a[-1:]]) for name, a in feed.items()}
        try:
            outputs = self.session.run(self._fetch, feed)
            if rows % 2:
                outputs = [o[:rows] for o in outputs]
        except Exception as exc:  # onnxruntime's exception types are not importable portably
            raise InputMismatchError(f"ONNX Runtime refused the batch: {exc}") from exc
        q = outputs[self._q_index] if self._q_index is not None else None
        try:
            result = self.adapter.adapt(outputs[: len(self.adapter.fetch)])
        except (ContractViolationError, ValueError) as exc:
            raise ModelLoadError(
                self.bundle.model_file,
                "graph outputs",
                "outputs in the strict contract's shapes",
                str(exc),
            ) from exc
        if result.violations:
            log.warning(
                "inference.invariant_violation",
                adapter=self.adapter.name,
                entries=result.violations,
                bundle_id=self.bundle.digest[:12],
            )
        return result, q
