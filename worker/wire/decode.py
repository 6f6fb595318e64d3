"""Feature message bytes -> one validated sample, or a rejection with a reason (pure code).

Robots send broken readings: a ``null`` entry and the tokens ``NaN``/``Infinity``/``-Infinity``
(what Python's json writes) are readings, not malformed messages; they reach the model and come
out as fault bottoms. Everything else that does not fit becomes a dead letter with its reason.

Rejection codes, decided once:

* ``invalid_json``: not UTF-8 JSON, even with the NaN/Infinity tokens allowed.
* ``invalid_message``: JSON, but not a feature message: top level not an object, a missing or
  ill-typed field, an id out of 1..max_id_length characters, an unreadable ``ts``, a
  **missing input name**, or a leaf that is not a number (a string or a boolean where a
  number belongs: the shape is right, the type is not).
* ``unknown_input``: an input name the bundle does not have (also when another is missing:
  a misspelled name is reported as what it is).
* ``shape_mismatch``: wrong nesting or lengths: ragged arrays, a number where an array
  belongs, an array where a number belongs.
* ``too_large``: over a limit: message bytes (checked before parsing), context bytes, numbers
  across all inputs, nesting depth (of the document or of one input).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from itertools import chain, repeat
from typing import Any, Final, NamedTuple

import numpy as np
import orjson

from worker.errors import InputMismatchError
from worker.wire.limits import Limits

_FLOAT_LEAVES: Final[frozenset[type]] = frozenset((float, int, type(None)))
_NONE: Final = type(None)
_INT_LEAVES: Final[frozenset[type]] = frozenset((int,))
_BOOL_LEAVES: Final[frozenset[type]] = frozenset((bool,))
_MAX_TS_CHARS: Final = 64
_INT64_MIN: Final = -(2**63)
_UINT64_MAX: Final = 2**64 - 1
_MISSING: Final = object()
_CONSTANTS: Final = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class ErrorCode(StrEnum):
    """Why a message became a dead letter (header ``scm-error-code``)."""

    INVALID_JSON = "invalid_json"
    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_INPUT = "unknown_input"
    SHAPE_MISMATCH = "shape_mismatch"
    TOO_LARGE = "too_large"
    # Not produced here: the main loop uses it when the model refuses a well-formed sample.
    INFERENCE_ERROR = "inference_error"


@dataclass(frozen=True, slots=True)
class SampleSpec:
    """One bundle input per sample (batch axis removed); ``None`` is a free dimension."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype[Any]


class Sample(NamedTuple):
    """A valid feature message, its inputs already in the graph's dtype and shape.

    A NamedTuple, not a frozen dataclass: one is built per message on the hot path, and
    ``tuple.__new__`` from C costs a fraction of a dataclass's ``__init__``.
    """

    message_id: str
    device_id: str
    ts: float | None
    context: dict[str, Any] | None
    inputs: dict[str, np.ndarray]
    raw_inputs: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message cannot be processed: a code and a reason naming expected and found."""

    code: ErrorCode
    reason: str


class _RejectError(Exception):
    """Internal: unwinds from deep in validation to the one place that builds a Rejection."""

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


# --- parsing ----------------------------------------------------------------------------------


def _parse_int(text: str) -> int | float:
    # orjson reads integers beyond 64 bits as floats; the fallback must agree, or whether a
    # big integer is accepted would depend on an unrelated NaN token elsewhere in the message.
    # float() also sidesteps int()'s 4300-digit limit, which would raise ValueError.
    value = int(text) if len(text) <= 20 else None
    if value is not None and _INT64_MIN <= value <= _UINT64_MAX:
        return value
    return float(text)


def _parse(value: bytes) -> tuple[Any, bool]:
    """The parsed document, and whether the lenient fallback parser produced it."""
    try:
        return orjson.loads(value), False
    except orjson.JSONDecodeError:
        pass
    return _parse_leniently(value), True


def _parse_leniently(value: bytes) -> Any:
    """What orjson refused: NaN/Infinity tokens (and nesting beyond 1024) are read by the
    standard library. Only a document both refuse is invalid JSON."""
    try:
        text = value.decode("utf-8")
        return json.loads(text, parse_constant=_CONSTANTS.__getitem__, parse_int=_parse_int)
    except RecursionError as exc:
        raise _RejectError(
            ErrorCode.TOO_LARGE, "expected JSON nested at most ~1000 levels deep, found deeper"
        ) from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise _RejectError(ErrorCode.INVALID_JSON, f"expected UTF-8 JSON, found: {exc}") from exc


def _require_echoable(value: Any, field: str) -> None:
    """Refuse what orjson cannot write back: lone surrogates (stdlib only), very deep nesting."""
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        code = ErrorCode.TOO_LARGE if "ecursion" in str(exc) else ErrorCode.INVALID_MESSAGE
        raise _RejectError(code, f"{field}: expected echoable JSON, found: {exc}") from exc


# --- header fields ----------------------------------------------------------------------------


def _identifier(doc: dict[str, Any], key: str, limits: Limits) -> str:
    value = doc.get(key)
    if type(value) is not str:
        found = "nothing" if value is None else type(value).__name__
        raise _RejectError(ErrorCode.INVALID_MESSAGE, f"{key}: expected a string, found {found}")
    if not 1 <= len(value) <= limits.max_id_length:
        raise _RejectError(
            ErrorCode.INVALID_MESSAGE,
            f"{key}: expected 1 to {limits.max_id_length} characters, found {len(value)}",
        )
    return value


def _timestamp(value: Any) -> float | None:
    """Epoch seconds from a number or an RFC 3339 string; a naive time is read as UTC."""
    if value is None:
        return None
    kind = type(value)
    if kind is float or kind is int:
        seconds = float(value)
        if math.isfinite(seconds):
            return seconds
    elif kind is str and len(value) <= _MAX_TS_CHARS:
        try:
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return parsed.timestamp()
        except (ValueError, OverflowError):
            pass  # year 1 with a positive offset overflows in timestamp()
    shown = value[:_MAX_TS_CHARS] if kind is str else kind.__name__
    raise _RejectError(
        ErrorCode.INVALID_MESSAGE,
        f"ts: expected finite epoch seconds or an RFC 3339 string, found {shown!r}",
    )


def _context(value: Any, limits: Limits) -> dict[str, Any] | None:
    if value is None:
        return None
    if type(value) is not dict:
        raise _RejectError(
            ErrorCode.INVALID_MESSAGE, f"context: expected an object, found {type(value).__name__}"
        )
    try:
        size = len(orjson.dumps(value))
    except orjson.JSONEncodeError as exc:
        # orjson reads 1024 levels but writes only 254; a context we cannot echo is refused.
        code = ErrorCode.TOO_LARGE if "ecursion" in str(exc) else ErrorCode.INVALID_MESSAGE
        raise _RejectError(code, f"context: expected echoable JSON, found: {exc}") from exc
    if size > limits.max_context_bytes:
        raise _RejectError(
            ErrorCode.TOO_LARGE,
            f"context: expected at most {limits.max_context_bytes} bytes, found {size}",
        )
    return value


# --- inputs -----------------------------------------------------------------------------------


def _shape_text(shape: Sequence[int | None]) -> str:
    return "[" + ", ".join("*" if d is None else str(d) for d in shape) + "]"


def _leaf_types(dtype: np.dtype[Any]) -> frozenset[type]:
    if dtype.kind == "b":
        return _BOOL_LEAVES
    if dtype.kind in "iu":
        return _INT_LEAVES  # no floats (silent truncation) and no null (no NaN in integers)
    return _FLOAT_LEAVES


def _leaf_text(types: frozenset[type]) -> str:
    if types is _BOOL_LEAVES:
        return "booleans"
    return "integers" if types is _INT_LEAVES else "numbers or null"


def _nesting_exceeds(node: Any, levels: int, budget: int) -> bool:
    """Whether lists nest more than ``levels`` deep in ``node``; at most ``budget`` lists seen."""
    level = [node] if type(node) is list else []
    for _ in range(levels):  # after i rounds, ``level`` holds the lists i steps below node
        level = [child for item in level for child in item if type(child) is list]
        budget -= len(level)
        if not level or budget < 0:
            return budget < 0
    return bool(level)


class _Walker:
    """Validates one nested input against its per-sample shape and collects the leaves."""

    def __init__(self, spec: SampleSpec, limits: Limits, used: int) -> None:
        self.spec = spec
        self.limits = limits
        self.leaves: list[Any] = []
        self.room = limits.max_elements - used  # numbers left for this message
        self.dims: list[int | None] = list(spec.shape)  # free dims fixed by the first sibling
        self.types = _leaf_types(spec.dtype)
        self.path: list[int] = []

    def where(self) -> str:
        return f"inputs.{self.spec.name}" + "".join(f"[{i}]" for i in self.path)

    def reject(self, code: ErrorCode, detail: str) -> _RejectError:
        return _RejectError(code, f"{self.where()}: {detail}")

    def walk(self, node: Any, depth: int) -> None:
        if depth == len(self.dims):
            self.leaf(node, depth)
            return
        want = self.dims[depth]
        if type(node) is not list:
            shape = _shape_text(self.spec.shape[depth:])
            found = type(node).__name__ if node is not None else "null"
            raise self.reject(ErrorCode.SHAPE_MISMATCH, f"expected an array {shape}, found {found}")
        if depth == 0:
            self.check_room(len(node))
        if want is None:
            self.dims[depth] = want = len(node)
        if len(node) != want:
            raise self.reject(
                ErrorCode.SHAPE_MISMATCH,
                f"expected {want} entries (shape {_shape_text(self.spec.shape)}, ragged arrays "
                f"are refused), found {len(node)}",
            )
        if depth == len(self.dims) - 1:
            self.room -= len(node)  # counted before the leaves are copied
            self.check_room(0)
        self.path.append(0)
        for index, child in enumerate(node):
            self.path[-1] = index
            self.walk(child, depth + 1)
        self.path.pop()

    def check_room(self, rows: int) -> None:
        """Refuse early: ``rows`` outer entries times the fixed inner dims must still fit."""
        at_least = rows * math.prod(d for d in self.spec.shape[1:] if d is not None)
        if self.room < 0 or at_least > self.room:
            raise self.reject(
                ErrorCode.TOO_LARGE,
                f"expected at most {self.limits.max_elements} numbers per message, found more",
            )

    def leaf(self, node: Any, depth: int) -> None:
        if type(node) in self.types:
            self.leaves.append(node)
            return
        if type(node) is list:
            levels = self.limits.max_depth - depth
            if _nesting_exceeds(node, levels, self.limits.max_elements):
                raise self.reject(
                    ErrorCode.TOO_LARGE, f"expected nesting at most {self.limits.max_depth} deep"
                )
            raise self.reject(
                ErrorCode.SHAPE_MISMATCH,
                f"expected {_leaf_text(self.types)} at depth {depth} (shape "
                f"{_shape_text(self.spec.shape)}), found an array",
            )
        raise self.reject(
            ErrorCode.INVALID_MESSAGE,
            f"expected {_leaf_text(self.types)}, found {type(node).__name__}",
        )

    def shape(self) -> tuple[int, ...]:
        # A free dimension below an empty array was never seen: it has no entries either.
        return tuple(0 if d is None else d for d in self.dims)


def _to_array(leaves: list[Any], spec: SampleSpec, shape: tuple[int, ...]) -> np.ndarray:
    try:
        # Casting 1e300 to float32 warns "overflow"; becoming inf is the intended reading.
        with np.errstate(over="ignore", invalid="ignore"):
            array = np.array(leaves, dtype=spec.dtype)
    except (OverflowError, TypeError, ValueError) as exc:
        raise _RejectError(
            ErrorCode.INVALID_MESSAGE,
            f"inputs.{spec.name}: expected numbers that fit {spec.dtype.name}, found: {exc}",
        ) from exc
    return array.reshape(shape)


@functools.cache
def _float_limit(dtype: np.dtype[Any]) -> float:
    return float(np.finfo(dtype).max)


def _fast_vector(value: Any, spec: SampleSpec, room: int) -> np.ndarray | None:
    """The hot path: a flat list of numbers (or null) for a rank-1 float input, else None."""
    if (
        type(value) is not list
        or len(spec.shape) != 1
        or len(value) > room
        or (spec.shape[0] is not None and len(value) != spec.shape[0])
        or spec.dtype.kind != "f"
    ):
        return None
    kinds = set(map(type, value))
    if not kinds <= _FLOAT_LEAVES:
        return None
    if value and spec.dtype.itemsize < 8:
        # A range check in Python is cheaper than np.errstate; a NaN can only make it fail.
        limit = _float_limit(spec.dtype)
        if _NONE in kinds or not (-limit <= min(value) and max(value) <= limit):
            with np.errstate(over="ignore"):  # 1e300 -> inf in float32 is the intended reading
                return np.array(value, dtype=spec.dtype)
    return np.array(value, dtype=spec.dtype)


def _array(value: Any, spec: SampleSpec, limits: Limits, used: int) -> np.ndarray:
    fast = _fast_vector(value, spec, limits.max_elements - used)
    if fast is not None:
        return fast
    if len(spec.shape) > limits.max_depth:
        raise _RejectError(
            ErrorCode.TOO_LARGE,
            f"inputs.{spec.name}: expected nesting at most {limits.max_depth} deep, "
            f"the bundle declares {len(spec.shape)}",
        )
    walker = _Walker(spec, limits, used)
    walker.walk(value, 0)
    return _to_array(walker.leaves, spec, walker.shape())


def _missing_or_unknown(raw: dict[str, Any], specs: Sequence[SampleSpec]) -> _RejectError:
    names = [spec.name for spec in specs]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        return _RejectError(
            ErrorCode.UNKNOWN_INPUT,
            f"inputs: expected names {names}, found unknown {[u[:64] for u in unknown[:8]]}",
        )
    missing = [name for name in names if name not in raw]
    return _RejectError(ErrorCode.INVALID_MESSAGE, f"inputs: expected {names}, missing {missing}")


def _inputs(
    raw: dict[str, Any], specs: Sequence[SampleSpec], limits: Limits
) -> dict[str, np.ndarray]:
    if len(raw) != len(specs):
        raise _missing_or_unknown(raw, specs)
    arrays: dict[str, np.ndarray] = {}
    used = 0
    for spec in specs:
        value = raw.get(spec.name, _MISSING)
        if value is _MISSING:
            raise _missing_or_unknown(raw, specs)
        array = _array(value, spec, limits, used)
        used += array.size
        arrays[spec.name] = array
    return arrays


# --- entry points -----------------------------------------------------------------------------


def _sample(doc: Any, specs: Sequence[SampleSpec], limits: Limits, lenient: bool) -> Sample:
    if type(doc) is not dict:
        raise _RejectError(
            ErrorCode.INVALID_MESSAGE, f"expected a JSON object, found {type(doc).__name__}"
        )
    message_id = _identifier(doc, "message_id", limits)
    device_id = _identifier(doc, "device_id", limits)
    if lenient:
        _require_echoable([message_id, device_id], "message_id/device_id")
    raw = doc.get("inputs")
    if type(raw) is not dict:
        found = "nothing" if raw is None else type(raw).__name__
        raise _RejectError(ErrorCode.INVALID_MESSAGE, f"inputs: expected an object, found {found}")
    arrays = _inputs(raw, specs, limits)
    ts = _timestamp(doc.get("ts"))
    context = _context(doc.get("context"), limits)
    return Sample(message_id, device_id, ts, context, arrays, raw)


def decode_feature(
    value: bytes | None, specs: Sequence[SampleSpec], limits: Limits
) -> Sample | Rejection:
    """Validate one feature message; never raises for bad input, whatever the bytes."""
    if value is None:
        return Rejection(ErrorCode.INVALID_MESSAGE, "expected a JSON object, found no value")
    if len(value) > limits.max_message_bytes:
        return Rejection(
            ErrorCode.TOO_LARGE,
            f"expected at most {limits.max_message_bytes} bytes, found {len(value)}",
        )
    try:
        doc, lenient = _parse(value)
        return _sample(doc, specs, limits, lenient)
    except _RejectError as rejection:
        return Rejection(rejection.code, rejection.reason)
    except RecursionError:
        return Rejection(ErrorCode.TOO_LARGE, "expected nesting at most ~1000 deep, found deeper")


_Fields = tuple[str, str, float | None, dict[str, Any] | None, list[Any], dict[str, Any]]
_UNUSUAL: Final = object()
_TS_KINDS: Final[frozenset[type]] = frozenset((float, int, type(None)))
_CONTEXT_KINDS: Final[frozenset[type]] = frozenset((dict, type(None)))


def _lenient_doc(value: bytes, limits: Limits) -> Any:
    """The lenient reading of a value orjson refused, or _UNUSUAL for decode_feature to judge.

    ``decode_feature`` checks more in such a document: that orjson can write its ids back
    (the standard library reads lone surrogates) and its context's size whatever the message
    length (``_context_fits`` bounds orjson's readings only). Those are checked here; the
    document then goes through the batch checks like any other.
    """
    try:
        doc = _parse_leniently(value)
    except _RejectError:
        return _UNUSUAL
    if type(doc) is not dict:
        return _UNUSUAL
    context = doc.get("context")
    try:
        orjson.dumps([doc.get("message_id"), doc.get("device_id")])
        if context is not None and len(orjson.dumps(context)) > limits.max_context_bytes:
            return _UNUSUAL
    except orjson.JSONEncodeError:
        return _UNUSUAL
    return doc


def _parse_all(values: Sequence[bytes | None], limits: Limits) -> tuple[list[Any], int]:
    """The document read for each value, or _UNUSUAL for any decode_feature must judge; and
    the byte length of the longest value.

    No Python call per message: ``list.extend`` keeps what ``map`` produced before a value
    failed, so a refused value (None, too large, invalid JSON, the NaN/Infinity tokens that
    need the lenient reading) costs one exception, not a second pass over the batch. A value
    with those tokens (~1 % of a fleet's) is read leniently here, as ``decode_feature``
    would, so that its batch still takes the column-wise path.
    """
    allowed = limits.max_message_bytes
    longest = max(map(len, filter(None, values)), default=0)
    readable: Sequence[bytes | None] = values
    if longest > allowed or None in values:
        readable = [b"" if v is None or len(v) > allowed else v for v in values]
    docs: list[Any] = []
    rest = iter(readable)
    while len(docs) < len(readable):
        try:
            docs.extend(map(orjson.loads, rest))  # type: ignore[arg-type]
        except orjson.JSONDecodeError:  # extend stopped at the refused value
            docs.append(_lenient_doc(readable[len(docs)], limits))  # type: ignore[arg-type]
    return docs, longest


def _quick_doc(doc: Any, spec: SampleSpec, width: int, limits: Limits) -> _Fields | None:
    """One parsed document in the common shape: ids, one rank-1 float input, ts, context.

    None whenever anything is unusual (a string ``ts``, another shape, a bad leaf...):
    ``decode_feature`` then decides, so the answer and the rejection reason are always
    exactly its own. Accepting here implies ``decode_feature`` accepts the same.
    """
    if type(doc) is not dict:
        return None
    message_id, device_id, raw = doc.get("message_id"), doc.get("device_id"), doc.get("inputs")
    if (
        type(message_id) is not str
        or type(device_id) is not str
        or not 0 < len(message_id) <= limits.max_id_length
        or not 0 < len(device_id) <= limits.max_id_length
        or type(raw) is not dict
        or len(raw) != 1
    ):
        return None
    vector = raw.get(spec.name)
    if (
        type(vector) is not list
        or len(vector) != width
        or not set(map(type, vector)) <= _FLOAT_LEAVES
    ):
        return None
    ts = doc.get("ts")
    if ts is not None:
        if type(ts) is not float and type(ts) is not int:
            return None
        ts = float(ts)
        if not math.isfinite(ts):
            return None
    context = doc.get("context")
    if context is not None:
        if type(context) is not dict:
            return None
        try:
            if len(orjson.dumps(context)) > limits.max_context_bytes:
                return None
        except orjson.JSONEncodeError:
            return None
    return message_id, device_id, ts, context, vector, raw


# ids, devices, stamps, contexts, every input's numbers in one flat list, raw inputs
_Columns = tuple[list[str], list[str], list[Any], list[Any], list[Any], list[Any]]

# orjson writes a parsed value in at most 4.5x its source text (``1e15`` becomes
# ``1000000000000000.0``; strings, literals and structure never grow), and it writes at most
# 254 levels of nesting, each of which takes two bytes of source text.
_GROWTH: Final = 5
_WRITABLE_TEXT: Final = 2 * 254


def _context_fits(longest_value: int, limits: Limits) -> bool:
    """True when no message that long can hold a context orjson cannot write or over the limit."""
    return longest_value <= min(_WRITABLE_TEXT, limits.max_context_bytes // _GROWTH)


def _columns(
    docs: list[Any], spec: SampleSpec, width: int, limits: Limits, longest_value: int
) -> _Columns | None:
    """``_quick_doc`` for a whole batch in C-level passes (map, set, min, max), field by field.

    All or nothing: None when any document is unusual, and the caller then checks them one
    by one. Every test here amounts to one ``_quick_doc`` makes, so both accept the same batches
    (the context's size is only measured when ``longest_value``, the byte length of the
    longest message, leaves room for a context over the limit).
    """
    if not docs:
        return [], [], [], [], [], []
    get = dict.get
    try:  # dict.get takes nothing but a dict: no pass over the types of documents and inputs
        ids: list[Any] = list(map(get, docs, repeat("message_id")))
        devices: list[Any] = list(map(get, docs, repeat("device_id")))
        raws: list[Any] = list(map(get, docs, repeat("inputs")))
        vectors: list[Any] = list(map(get, raws, repeat(spec.name)))
        # str.join takes nothing but strings (a parser makes no subclasses); one pass, in C.
        "".join(chain(ids, devices))
    except TypeError:
        return None
    lengths = set(map(len, chain(ids, devices)))
    if (
        min(lengths) < 1
        or max(lengths) > limits.max_id_length
        or set(map(len, raws)) != {1}
        or set(map(type, vectors)) != {list}
        or set(map(len, vectors)) != {width}
    ):
        return None
    flat = list(chain.from_iterable(vectors))  # what _samples converts, built once
    if not set(map(type, flat)) <= _FLOAT_LEAVES:
        return None
    stamps: list[Any] = list(map(get, docs, repeat("ts")))
    kinds = set(map(type, stamps))
    if not kinds <= _TS_KINDS:
        return None
    if kinds != {float}:
        stamps = [None if ts is None else float(ts) for ts in stamps]
    # A sum of floats is finite only if every one is (inf and nan stay); finite ones may
    # still overflow it, and the exact test decides then.
    if (kinds != {float} or not math.isfinite(sum(stamps))) and not all(
        map(math.isfinite, (ts for ts in stamps if ts is not None) if _NONE in kinds else stamps)
    ):
        return None
    contexts: list[Any] = list(map(get, docs, repeat("context")))
    context_kinds = set(map(type, contexts))
    if not context_kinds <= _CONTEXT_KINDS:
        return None
    present = [c for c in contexts if c is not None] if _NONE in context_kinds else contexts
    if present and not _context_fits(longest_value, limits):
        try:
            if max(map(len, map(orjson.dumps, present))) > limits.max_context_bytes:
                return None
        except orjson.JSONEncodeError:
            return None
    return ids, devices, stamps, contexts, flat, raws


def _quick_spec(specs: Sequence[SampleSpec], limits: Limits) -> tuple[SampleSpec, int] | None:
    """The one input and its width when the batch path applies: a fixed-size float vector."""
    if len(specs) != 1:
        return None
    spec = specs[0]
    if len(spec.shape) != 1 or spec.shape[0] is None or spec.dtype.kind != "f":
        return None
    if spec.shape[0] > limits.max_elements:
        return None
    return spec, spec.shape[0]


def decode_features(
    values: Sequence[bytes | None], specs: Sequence[SampleSpec], limits: Limits
) -> list[Sample | Rejection]:
    """``decode_feature`` for a micro-batch, with the same answer for every message.

    For the common bundle (one fixed-size float vector) the documents are checked field by
    field across the batch, and the numbers become one (batch, width) array in one call;
    each Sample's input is a row of it. NumPy converts every element the same way as the
    per-message path (the same dtype, the same Python objects), so the arrays are bit for
    bit the same. Anything unusual is left to ``decode_feature``.
    """
    quick = _quick_spec(specs, limits)
    if quick is None:
        return [decode_feature(value, specs, limits) for value in values]
    spec, width = quick
    docs, longest = _parse_all(values, limits)
    if _UNUSUAL not in docs:
        columns = _columns(docs, spec, width, limits, longest)
        if columns is not None:  # the common case: every message in the usual shape
            return _samples(columns, spec, width)
    out: list[Sample | Rejection | None] = [None] * len(docs)
    places = [place for place, doc in enumerate(docs) if doc is not _UNUSUAL]
    usual = [docs[place] for place in places]
    columns = _columns(usual, spec, width, limits, longest) if len(usual) < len(docs) else None
    if columns is None:  # somebody else is unusual too: find out who, one by one
        kept = [
            (place, _quick_doc(doc, spec, width, limits))
            for place, doc in zip(places, usual, strict=True)
        ]
        places = [place for place, found in kept if found is not None]
        rows = [found for _, found in kept if found is not None]
        ids, devices, stamps, contexts, vectors, raws = (
            map(list, zip(*rows, strict=True)) if rows else ([], [], [], [], [], [])
        )
        columns = ids, devices, stamps, contexts, list(chain.from_iterable(vectors)), raws
    for place, sample in zip(places, _samples(columns, spec, width), strict=True):
        out[place] = sample
    return [
        decode_feature(values[place], specs, limits) if item is None else item
        for place, item in enumerate(out)
    ]


_new_sample: Final = functools.partial(tuple.__new__, Sample)


def _samples(columns: _Columns, spec: SampleSpec, width: int) -> list[Sample | Rejection]:
    """Samples from checked columns; the numbers become one (batch, width) array in one call."""
    ids, devices, stamps, contexts, flat, raws = columns
    # One flat list converts ~2x faster than nested lists, element by element the same way.
    with np.errstate(over="ignore"):  # 1e300 -> inf in float32 is the intended reading
        rows = np.array(flat, dtype=spec.dtype).reshape(len(ids), width)
    name = spec.name
    inputs = [{name: row} for row in rows]
    return list(map(_new_sample, zip(ids, devices, stamps, contexts, inputs, raws, strict=True)))


def stack_inputs(samples: Sequence[Sample], specs: Sequence[SampleSpec]) -> dict[str, np.ndarray]:
    """Batch arrays ``(B, *shape)`` per input name in each spec's dtype; ``B`` may be 0.

    Raises InputMismatchError (a PoisonInputError) when samples disagree on a free
    dimension, so the caller can fall back to one sample per batch.
    """
    return {spec.name: _stack(samples, spec) for spec in specs}


def _stack(samples: Sequence[Sample], spec: SampleSpec) -> np.ndarray:
    if not samples:
        return np.empty((0, *(0 if d is None else d for d in spec.shape)), dtype=spec.dtype)
    rows = [sample.inputs[spec.name] for sample in samples]
    first = rows[0].shape
    if None in spec.shape:
        shapes = {row.shape for row in rows}
        if len(shapes) != 1:
            raise InputMismatchError(
                f"input {spec.name!r}: expected one per-sample shape per batch, "
                f"found {sorted(shapes)[:4]}"
            )
    if not first:
        return np.array(rows, dtype=spec.dtype)
    # concatenate + reshape is ~4x faster than np.stack for many small rows.
    return np.concatenate(rows).reshape(len(rows), *first).astype(spec.dtype, copy=False)
