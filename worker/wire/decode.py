"""Feature message bytes -> one validated sample, or a rejection with a reason (pure code).

Robots send broken readings: a ``null`` entry and the tokens ``NaN``/``Infinity``/``-Infinity``
(what Python's json writes) are readings, not malformed messages; they reach the model and come
out as fault bottoms. Everything else that does not fit becomes a dead letter with its reason.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import numpy as np
import orjson

from worker.wire.limits import Limits

_NUMBER = (float, int, type(None))


class ErrorCode(StrEnum):
    """Dead-letter codes (header ``scm-error-code``)."""

    INVALID_JSON = "invalid_json"  # not UTF-8 JSON at all
    INVALID_MESSAGE = "invalid_message"  # JSON, but not a feature message (fields, types)
    UNKNOWN_INPUT = "unknown_input"  # an input name the bundle does not have
    SHAPE_MISMATCH = "shape_mismatch"  # an input array of the wrong shape
    TOO_LARGE = "too_large"  # over a size limit (bytes, context, elements, depth)
    INFERENCE_FAILED = "inference_failed"  # the model refused a well-formed input


@dataclass(frozen=True, slots=True)
class SampleSpec:
    """One bundle input per sample (batch axis removed); ``None`` is a free dimension."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype[Any]


@dataclass(frozen=True, slots=True)
class Sample:
    """A valid feature message, its inputs already in the graph's dtype and shape."""

    message_id: str
    device_id: str
    ts: float | None
    context: dict[str, Any] | None
    inputs: dict[str, np.ndarray]
    raw_inputs: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message cannot be processed."""

    code: ErrorCode
    reason: str


class _RejectError(Exception):
    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _constant(token: str) -> float:
    return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[token]


def _parse(value: bytes) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        pass
    # orjson refuses NaN/Infinity tokens and integers beyond 64 bits; the standard library
    # takes both. Only a document both refuse is invalid JSON.
    try:
        doc = json.loads(value.decode("utf-8"), parse_constant=_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _RejectError(ErrorCode.INVALID_JSON, f"expected UTF-8 JSON, found: {exc}") from exc
    try:
        orjson.dumps(doc)  # what we cannot echo back (integers beyond 64 bits), we refuse now
    except TypeError as exc:
        raise _RejectError(
            ErrorCode.INVALID_MESSAGE, f"expected numbers within 64 bits, found: {exc}"
        ) from exc
    return doc


def _identifier(doc: dict[str, Any], key: str, limits: Limits) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        raise _RejectError(
            ErrorCode.INVALID_MESSAGE, f"{key}: expected a string, found {type(value).__name__}"
        )
    if not 1 <= len(value) <= limits.max_id_length:
        raise _RejectError(
            ErrorCode.INVALID_MESSAGE,
            f"{key}: expected 1 to {limits.max_id_length} characters, found {len(value)}",
        )
    return value


def _timestamp(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return parsed.timestamp()
    raise _RejectError(
        ErrorCode.INVALID_MESSAGE,
        f"ts: expected epoch seconds or RFC 3339, found {str(value)[:64]!r}",
    )


def _context(value: Any, limits: Limits) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _RejectError(
            ErrorCode.INVALID_MESSAGE, f"context: expected an object, found {type(value).__name__}"
        )
    size = len(orjson.dumps(value))
    if size > limits.max_context_bytes:
        raise _RejectError(
            ErrorCode.TOO_LARGE,
            f"context: expected at most {limits.max_context_bytes} bytes, found {size}",
        )
    return value


def _flatten(value: Any, shape: tuple[int | None, ...], name: str, limits: Limits) -> list[Any]:
    """Walk a nested list checking shape, element types, depth and size; return the leaves."""
    flat: list[Any] = []
    found: list[int] = []

    def walk(node: Any, depth: int) -> None:
        if depth >= len(shape):
            if type(node) not in _NUMBER:
                raise _RejectError(
                    ErrorCode.INVALID_MESSAGE,
                    f"inputs.{name}: expected numbers or null, found {type(node).__name__}",
                )
            flat.append(node)
            if len(flat) > limits.max_elements:
                raise _RejectError(
                    ErrorCode.TOO_LARGE,
                    f"inputs.{name}: expected at most {limits.max_elements} numbers",
                )
            return
        if not isinstance(node, list):
            raise _RejectError(
                ErrorCode.SHAPE_MISMATCH,
                f"inputs.{name}: expected shape {_shape_text(shape)}, found a "
                f"{type(node).__name__} at depth {depth}",
            )
        if len(found) <= depth:
            found.append(len(node))
        want = shape[depth] if shape[depth] is not None else found[depth]
        if len(node) != want:
            raise _RejectError(
                ErrorCode.SHAPE_MISMATCH,
                f"inputs.{name}: expected shape {_shape_text(shape)}, found length "
                f"{len(node)} at depth {depth}",
            )
        for child in node:
            walk(child, depth + 1)

    if len(shape) > limits.max_depth:
        raise _RejectError(
            ErrorCode.TOO_LARGE, f"inputs.{name}: nesting deeper than {limits.max_depth}"
        )
    walk(value, 0)
    return flat


def _shape_text(shape: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("*" if d is None else str(d) for d in shape) + "]"


def _array(value: Any, spec: SampleSpec, limits: Limits) -> np.ndarray:
    shape = spec.shape
    if (
        len(shape) == 1
        and type(value) is list
        and len(value) == shape[0]
        and all(type(v) in _NUMBER for v in value)
    ):
        flat: list[Any] = value  # the common case: one flat vector of numbers
    else:
        flat = _flatten(value, shape, spec.name, limits)
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            array = np.array(flat, dtype=spec.dtype)
    except (OverflowError, TypeError, ValueError) as exc:
        raise _RejectError(
            ErrorCode.INVALID_MESSAGE,
            f"inputs.{spec.name}: expected numbers that fit {spec.dtype.name}, found: {exc}",
        ) from exc
    concrete = _concrete_shape(value, shape)
    return array.reshape(concrete)


def _concrete_shape(value: Any, shape: tuple[int | None, ...]) -> tuple[int, ...]:
    dims = []
    node = value
    for dim in shape:
        dims.append(dim if dim is not None else len(node))
        node = node[0] if node else None
    return tuple(dims)


def _inputs(
    doc: dict[str, Any], specs: Sequence[SampleSpec], limits: Limits
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    raw = doc.get("inputs")
    if not isinstance(raw, dict):
        raise _RejectError(
            ErrorCode.INVALID_MESSAGE, f"inputs: expected an object, found {type(raw).__name__}"
        )
    names = [spec.name for spec in specs]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise _RejectError(
            ErrorCode.UNKNOWN_INPUT, f"inputs: expected names {names}, found unknown {unknown[:8]}"
        )
    missing = [name for name in names if name not in raw]
    if missing:
        raise _RejectError(
            ErrorCode.INVALID_MESSAGE, f"inputs: expected {names}, missing {missing}"
        )
    return {spec.name: _array(raw[spec.name], spec, limits) for spec in specs}, raw


def decode_feature(
    value: bytes | None, specs: Sequence[SampleSpec], limits: Limits
) -> Sample | Rejection:
    """Validate one feature message; never raises for bad input."""
    if value is None:
        return Rejection(ErrorCode.INVALID_MESSAGE, "expected a JSON object, found no value")
    if len(value) > limits.max_message_bytes:
        return Rejection(
            ErrorCode.TOO_LARGE,
            f"expected at most {limits.max_message_bytes} bytes, found {len(value)}",
        )
    try:
        doc = _parse(value)
        if not isinstance(doc, dict):
            raise _RejectError(
                ErrorCode.INVALID_MESSAGE, f"expected a JSON object, found {type(doc).__name__}"
            )
        message_id = _identifier(doc, "message_id", limits)
        device_id = _identifier(doc, "device_id", limits)
        inputs, raw = _inputs(doc, specs, limits)
        return Sample(
            message_id,
            device_id,
            _timestamp(doc.get("ts")),
            _context(doc.get("context"), limits),
            inputs,
            raw,
        )
    except _RejectError as rejection:
        return Rejection(rejection.code, rejection.reason)
    except RecursionError:
        return Rejection(ErrorCode.TOO_LARGE, "nesting too deep to parse")


def stack_inputs(samples: Sequence[Sample], specs: Sequence[SampleSpec]) -> dict[str, np.ndarray]:
    """Batch arrays ``(B, *shape)`` per input; raises ValueError on ragged free dimensions."""
    if not samples:
        return {s.name: np.empty((0, *(d or 0 for d in s.shape)), dtype=s.dtype) for s in specs}
    return {spec.name: np.stack([sample.inputs[spec.name] for sample in samples]) for spec in specs}
