"""The direction head's ONNX Runtime shell: one input (a bundle input), logits (batch, 2|3)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from worker.errors import ConfigError, InputMismatchError
from worker.inference.runner import InputSpec

_FLOATS = {"tensor(float)": np.float32, "tensor(double)": np.float64}


class DirectionHeadRunner:
    """Runs a direction head on the same micro-batch as the bundle.

    ``input_name`` is the bundle input (feature message key) the head reads; by default the
    bundle's only input. The head must take one tensor whose per-sample shape is that input's
    and return one float tensor of shape (batch, 2) or (batch, 3).
    """

    def __init__(
        self,
        path: Path,
        bundle_inputs: tuple[InputSpec, ...],
        input_name: str | None = None,
        expected_sha256: str | None = None,
    ) -> None:
        where = f"direction head {path}"
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"{where}: expected a readable ONNX file, found {exc.strerror}"
            ) from exc
        self.path = path
        self.sha256 = hashlib.sha256(raw).hexdigest()
        if expected_sha256 is not None and expected_sha256 != self.sha256:
            raise ConfigError(
                f"{where}: model_sha256: expected {expected_sha256}, found {self.sha256}"
            )
        try:
            options = ort.SessionOptions()
            options.log_severity_level = 3
            self.session = ort.InferenceSession(
                raw, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises several unrelated types
            raise ConfigError(
                f"{where}: expected a model ONNX Runtime can load, found "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        names = [s.name for s in bundle_inputs]
        if input_name is None:
            if len(names) != 1:
                raise ConfigError(
                    f"{where}: expected --direction-head-input naming one of {names}, found none"
                )
            input_name = names[0]
        spec = next((s for s in bundle_inputs if s.name == input_name), None)
        if spec is None:
            raise ConfigError(
                f"{where}: input: expected one of the bundle's inputs {names}, found {input_name!r}"
            )
        self.input_name = input_name
        self.width = self._check_graph(where, spec)

    def _check_graph(self, where: str, spec: InputSpec) -> int:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            raise ConfigError(
                f"{where}: expected one graph input, found {[i.name for i in inputs]}"
            )
        dims = list(inputs[0].shape)[1:]
        want = list(spec.shape)[1:]
        if len(dims) != len(want) or any(
            isinstance(a, int) and isinstance(b, int) and a != b
            for a, b in zip(dims, want, strict=True)
        ):
            raise ConfigError(
                f"{where}: graph input shape: expected (batch, "
                f"{', '.join(map(str, want))}) like bundle input "
                f"{spec.name!r}, found {inputs[0].shape}"
            )
        self._graph_input = inputs[0].name
        self._dtype = _FLOATS.get(inputs[0].type)
        if self._dtype is None:
            raise ConfigError(
                f"{where}: graph input type: expected float or double, found {inputs[0].type}"
            )
        if len(outputs) != 1 or outputs[0].type not in _FLOATS:
            raise ConfigError(
                f"{where}: expected one float output (logits), found "
                f"{[(o.name, o.type) for o in outputs]}"
            )
        width = outputs[0].shape[-1] if len(outputs[0].shape) == 2 else None
        try:
            probe = self.run(np.zeros((2, *[d if isinstance(d, int) else 1 for d in want])))
        except InputMismatchError as exc:
            raise ConfigError(
                f"{where}: expected a head that runs on a batch of 2, found {exc}"
            ) from exc
        if (
            probe.ndim != 2
            or probe.shape[1] not in (2, 3)
            or (isinstance(width, int) and width != probe.shape[1])
        ):
            raise ConfigError(
                f"{where}: output shape: expected (batch, 2) or (batch, 3), found {probe.shape}"
            )
        return int(probe.shape[1])

    def run(self, batch: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Logits as float64, one row per sample (odd batches paired like the bundle's)."""
        x = np.ascontiguousarray(np.asarray(batch, dtype=self._dtype))
        rows = x.shape[0]
        if rows % 2:
            x = np.concatenate([x, x[-1:]])
        try:
            out: Any = self.session.run(None, {self._graph_input: x})[0]
        except Exception as exc:  # onnxruntime's exception types are not importable portably
            raise InputMismatchError(f"direction head refused the batch: {exc}") from exc
        logits: npt.NDArray[np.float64] = np.asarray(out[:rows], dtype=np.float64)
        return logits

    def classes(self, labels: tuple[str, ...] | None) -> tuple[str, ...]:
        """Column labels: given ones must match the width; default below/[in_range]/above."""
        default = ("below", "above") if self.width == 2 else ("below", "in_range", "above")
        if labels is None:
            return default
        if len(labels) != self.width:
            raise ConfigError(
                f"direction head {self.path}: labels: expected {self.width} "
                f"labels like the head's output, found {list(labels)}"
            )
        return labels
