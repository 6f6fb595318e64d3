"""Results and solver requests as JSON bytes, one batch at a time (pure code).

``decoded`` is ``null`` on every component of a bottom entry: a bottom is never published as a
number. orjson also writes any stray NaN or infinity as ``null``, a second fence behind the
adapters' invariant checks. Each field of the batch is converted with one ``tolist()`` call;
the per-sample loop only indexes Python lists.

Most of a result does not depend on the sample's numbers: the bundle and policy are the
batch's, and everything after ``decoded`` (masks, flags, provenance, route, processed_at)
takes one of a handful of values per batch. Those parts are serialized once per distinct
pattern and spliced; the bytes are exactly what ``orjson.dumps`` writes for the whole
record (orjson is compact and deterministic, so a record is the concatenation of its parts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import attrgetter, itemgetter
from typing import Any, Final, NamedTuple, Protocol

import numpy as np
import orjson

from worker.inference.decode import denominator_view
from worker.inference.result import StrictResult
from worker.wire.decode import Sample

MASKS: Final = ("bottom_mask", "gap_mask", "fault_mask", "semantic_bottom_mask")
# Below this batch size, finding the shared patterns costs more than it saves (measured).
SPLICE_MIN_ROWS: Final = 64


class Source(NamedTuple):
    """Where the input message came from; a duplicate after a crash has the same source."""

    topic: str
    partition: int
    offset: int


class HasSource(Protocol):
    """Anything with a record's coordinates (a Source, or the loop's consumed record)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...


@dataclass(frozen=True, slots=True)
class BundleRef:
    """Which bundle produced a record: manifest digest and the two schema versions."""

    id: str
    schema_version: int
    strict_inference_schema_version: int


def sample_provenance(fault: bool, semantic: bool, available: bool) -> str:
    """The sample-level label from flags already intersected with the sample's bottom.

    ``none`` when neither flag is set (the sample is not bottom); ``unavailable`` for a bottom
    when the adapter could not measure provenance; else ``fault``, ``semantic`` or ``mixed``.
    Contract section 7 counts a bottom sample with neither flag as semantic: callers pass
    ``semantic=True`` for it (``encode_batch`` does).
    """
    if not (fault or semantic):
        return "none"
    if not available:
        return "unavailable"
    if fault and semantic:
        return "mixed"
    return "fault" if fault else "semantic"


def _check_lengths(result: StrictResult, **columns: Sequence[object]) -> None:
    rows = result.batch_size
    wrong = {name: len(values) for name, values in columns.items() if len(values) != rows}
    if wrong:
        raise ValueError(f"expected {rows} rows like the result, found {wrong}")


def _decoded_rows(result: StrictResult) -> list[Any]:
    """``decoded`` as nested lists with ``None`` on every component of a bottom entry."""
    decoded = result.decoded
    view = denominator_view(decoded.shape, result.bottom_mask)
    bottom = np.broadcast_to(view, decoded.shape)
    if not bottom.any():
        rows: list[Any] = decoded.tolist()
        return rows
    boxed = decoded.astype(object)
    boxed[bottom] = None
    nulled: list[Any] = boxed.tolist()
    return nulled


def _sample_labels(result: StrictResult, rows: Sequence[int] | None = None) -> list[str]:
    """Contract section 7, per sample: OR-reduce, intersect with bottom, default semantic.

    With ``rows``, only those samples, in that order.
    """
    bottom = _pick(result.per_sample("bottom_mask"), rows)
    fault = _pick(result.per_sample("fault_mask"), rows) & bottom
    semantic = (_pick(result.per_sample("semantic_bottom_mask"), rows) | ~fault) & bottom
    available = result.provenance_available
    return [
        sample_provenance(f, s, available)
        for f, s in zip(fault.tolist(), semantic.tolist(), strict=True)
    ]


def _pick(array: np.ndarray, rows: Sequence[int] | None) -> np.ndarray:
    return array if rows is None else array[np.asarray(rows, dtype=np.intp)]


def _mask_rows(result: StrictResult, rows: Sequence[int] | None = None) -> dict[str, list[Any]]:
    """The five mask fields as per-sample nested lists; provenance codes None if unavailable.

    With ``rows``, only those samples, in that order.
    """
    out: dict[str, list[Any]] = {
        name: _pick(getattr(result, name), rows).tolist() for name in MASKS
    }
    out["bottom_provenance"] = (
        _pick(result.bottom_provenance, rows).tolist()
        if result.provenance_available
        else [None] * (result.batch_size if rows is None else len(rows))
    )
    return out


def _envelope(
    sample: Sample, source: HasSource, bundle: dict[str, Any], policy: dict[str, str] | None
) -> dict[str, Any]:
    return {
        "message_id": sample.message_id,
        "device_id": sample.device_id,
        "ts": sample.ts,
        "context": sample.context,
        "source": {"topic": source.topic, "partition": source.partition, "offset": source.offset},
        "bundle": bundle,
        "policy": policy,
    }


def _bundle_dict(bundle: BundleRef) -> dict[str, Any]:
    return {
        "id": bundle.id,
        "schema_version": bundle.schema_version,
        "strict_inference_schema_version": bundle.strict_inference_schema_version,
    }


def _policy_dict(policy: Mapping[str, str] | None) -> dict[str, str] | None:
    if policy is None:
        return None
    return {key: policy[key] for key in ("name", "revision", "sha256")}


def encode_batch(
    samples: Sequence[Sample],
    sources: Sequence[HasSource],
    result: StrictResult,
    routes: Sequence[str],
    bundle: BundleRef,
    processed_at: float,
    *,
    policy: Mapping[str, str] | None = None,
    direction: Sequence[Mapping[str, Any]] | None = None,
) -> list[bytes]:
    """One Result (UTF-8 JSON) per sample, in order; row i of every field is ``samples[i]``.

    ``gap`` is false on a bottom sample: a sample that is not trusted is not "accepted with a
    warning". ``policy`` ({name, revision, sha256}) names the inference policy the batch ran
    under; ``null`` when the worker runs without one. ``direction`` holds one object per
    sample from the direction head; ``null`` on every record without one. Raises ValueError
    when the sequences and the result disagree on the batch size.
    """
    _check_lengths(result, samples=samples, sources=sources, routes=routes)
    if direction is not None:
        _check_lengths(result, direction=direction)
    ref = _bundle_dict(bundle)
    named = _policy_dict(policy)
    if direction is None and result.batch_size >= SPLICE_MIN_ROWS:
        return _spliced(samples, sources, result, routes, ref, named, processed_at)
    decoded = _decoded_rows(result)
    masks = _mask_rows(result)
    labels = _sample_labels(result)
    bottom = result.per_sample("bottom_mask")
    gap = (result.per_sample("gap_mask") & ~bottom).tolist()
    bottom_flags = bottom.tolist()
    out: list[bytes] = []
    for i, sample in enumerate(samples):
        record = _envelope(sample, sources[i], ref, named)
        outputs = {"decoded": decoded[i]}
        for name, values in masks.items():
            outputs[name] = values[i]
        record["outputs"] = outputs
        record["bottom"] = bottom_flags[i]
        record["gap"] = gap[i]
        record["provenance"] = labels[i]
        record["route"] = routes[i]
        record["processed_at"] = processed_at
        record["direction"] = direction[i] if direction is not None else None
        out.append(orjson.dumps(record))
    return out


def _spliced(
    samples: Sequence[Sample],
    sources: Sequence[HasSource],
    result: StrictResult,
    routes: Sequence[str],
    ref: dict[str, Any],
    named: dict[str, str] | None,
    processed_at: float,
) -> list[bytes]:
    """``encode_batch``'s records assembled from parts serialized once per batch or pattern.

    Strings and numbers are serialized a whole column at a time and split: inside orjson's
    output a string never holds an unescaped quote, and a number never holds a comma or a
    bracket, so the separators found are exactly the ones between elements. The records are
    joined column by column (``map`` over ``zip``), without a Python step per record.
    """
    dumps = orjson.dumps
    ids = _split_strings(dumps(list(map(_message_id, samples))))
    devices = _split_strings(dumps(list(map(_device_id, samples))))
    stamps = dumps(list(map(_ts, samples)))[1:-1].split(b",")
    contexts = list(map(dumps, map(_context, samples)))
    topic_of, partition_of, offset_of = _source_getters(sources)
    topics = list(map(topic_of, sources))
    partitions = list(map(partition_of, sources))
    if len(set(topics)) == 1:  # the usual batch, from one topic: heads keyed by partition
        keys: list[Any] = partitions
    else:
        keys = list(zip(topics, partitions, strict=True))
    heads = _heads(keys, topics, partitions)
    offsets = dumps(list(map(offset_of, sources)))[1:-1].split(b",")
    opening, decoded, closing = _decoded_bytes(result)
    middle = b"".join(
        (
            b'},"bundle":',
            dumps(ref),
            b',"policy":',
            dumps(named),
            b',"outputs":{"decoded":',
            opening,
        )
    )
    return list(
        map(
            b"".join,
            zip(
                repeat(b'{"message_id":"'),
                ids,
                repeat(b'","device_id":"'),
                devices,
                repeat(b'","ts":'),
                stamps,
                repeat(b',"context":'),
                contexts,
                map(heads.__getitem__, keys),
                offsets,
                repeat(middle),
                decoded,
                _tails(result, routes, processed_at, closing),
                strict=False,  # repeat() never ends; the columns' lengths were checked
            ),
        )
    )


# Sample is a NamedTuple: its fields by position, cheaper from C than by name.
_message_id: Final = itemgetter(Sample._fields.index("message_id"))
_device_id: Final = itemgetter(Sample._fields.index("device_id"))
_ts: Final = itemgetter(Sample._fields.index("ts"))
_context: Final = itemgetter(Sample._fields.index("context"))
_SOURCE_FIELDS: Final = ("topic", "partition", "offset")
_by_position: Final = (itemgetter(0), itemgetter(1), itemgetter(2))
_by_name: Final = (attrgetter("topic"), attrgetter("partition"), attrgetter("offset"))


def _source_getters(sources: Sequence[HasSource]) -> tuple[Any, Any, Any]:
    """Getters for a source's topic, partition and offset: by position when every source is
    a NamedTuple that starts with those fields (``Source``, the loop's ``Inbound``)."""
    for kind in set(map(type, sources)):
        if getattr(kind, "_fields", ())[:3] != _SOURCE_FIELDS or not issubclass(kind, tuple):
            return _by_name
    return _by_position


def _heads(keys: list[Any], topics: list[str], partitions: list[int]) -> dict[Any, bytes]:
    """Per distinct source partition, its record bytes from ``,"source":`` to the offset."""
    at = dict(zip(keys, range(len(keys)), strict=True))  # one place of each distinct key
    return {
        key: b',"source":'
        + orjson.dumps({"topic": topics[i], "partition": partitions[i]})[:-1]
        + b',"offset":'
        for key, i in at.items()
    }


def _split_strings(blob: bytes) -> list[bytes]:
    """The elements of a serialized list of strings, each without its quotes."""
    return blob[2:-2].split(b'","')


def _decoded_bytes(result: StrictResult) -> tuple[bytes, list[bytes], bytes]:
    """Each sample's ``decoded`` as orjson writes the nested list ``_decoded_rows`` gives,
    as (opening, rows, closing): a row's bytes are ``opening + rows[i] + closing``.

    For float outputs of one or two dimensions, the whole batch is serialized once (as
    float64, which is what ``tolist`` hands orjson, with NaN, written null, on bottoms). The
    brackets around a two-dimensional row are left to the caller's join, not rebuilt per row.
    """
    decoded = result.decoded
    if decoded.dtype.kind != "f" or decoded.ndim not in (1, 2) or decoded.shape[0] == 0:
        return b"", [orjson.dumps(row) for row in _decoded_rows(result)], b""
    values = decoded.astype(np.float64)
    bottom = np.broadcast_to(denominator_view(decoded.shape, result.bottom_mask), decoded.shape)
    values[bottom] = np.nan
    blob = orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY)
    if decoded.ndim == 1:
        return b"", blob[1:-1].split(b","), b""
    if decoded.shape[1] == 0:
        return b"", [b"[]"] * decoded.shape[0], b""
    return b"[", blob[2:-2].split(b"],["), b"]"


def _patterns(result: StrictResult, routes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per sample, which distinct (mask entries, provenance codes, route) pattern it has.

    Returns the first row of each pattern and each row's pattern index. The entries are
    packed into one integer per row when they fit (the usual case: a few bits per entry),
    which is much cheaper than ``np.unique`` over rows.
    """
    rows = result.batch_size
    codes = {route: i for i, route in enumerate(dict.fromkeys(routes))}
    route_codes = np.array(list(map(codes.__getitem__, routes)), dtype=np.int64)
    masks = [getattr(result, name).reshape(rows, -1) for name in MASKS]
    provenance = result.bottom_provenance.reshape(rows, -1)
    width = sum(m.shape[1] for m in masks) + 2 * provenance.shape[1]
    if (
        width <= 54
        and len(codes) <= 256
        and (provenance.size == 0 or (int(provenance.min()) >= 0 and int(provenance.max()) <= 3))
    ):
        bits = np.concatenate([*masks, (provenance & 1) == 1, (provenance & 2) == 2], axis=1)
        packed = bits.astype(np.int64) @ (np.int64(1) << np.arange(width, dtype=np.int64))
        _, first, inverse = np.unique(
            packed * 256 + route_codes, return_index=True, return_inverse=True
        )
    else:
        parts = [m.astype(np.int64) for m in (*masks, provenance)]
        parts.append(route_codes.reshape(rows, 1))
        _, first, inverse = np.unique(
            np.concatenate(parts, axis=1), axis=0, return_index=True, return_inverse=True
        )
    return first, inverse


def _tails(
    result: StrictResult, routes: Sequence[str], processed_at: float, opening: bytes = b""
) -> list[bytes]:
    """Per sample: the record's bytes after ``decoded``, serialized once per distinct pattern
    and starting with ``opening`` (the end of ``decoded`` itself, if any).

    Everything in the tail is a function of the sample's mask and provenance entries and its
    route, so samples with equal entries share one serialization.
    """
    first, inverse = _patterns(result, routes)
    picked = first.tolist()
    masks = _mask_rows(result, picked)
    labels = _sample_labels(result, picked)
    bottom = result.per_sample("bottom_mask")
    gap = (result.per_sample("gap_mask") & ~bottom)[first].tolist()
    bottom_flags = bottom[first].tolist()
    shared = []
    for j, i in enumerate(picked):
        outputs = orjson.dumps({name: values[j] for name, values in masks.items()})
        rest = orjson.dumps(
            {
                "bottom": bottom_flags[j],
                "gap": gap[j],
                "provenance": labels[j],
                "route": routes[i],
                "processed_at": processed_at,
                "direction": None,
            }
        )
        shared.append(b"".join((opening, b",", outputs[1:], b",", rest[1:])))
    return list(map(shared.__getitem__, inverse.reshape(-1).tolist()))


def encode_solver_requests(
    samples: Sequence[Sample],
    sources: Sequence[HasSource],
    result: StrictResult,
    indices: Sequence[int],
    bundle: BundleRef,
    *,
    policy: Mapping[str, str] | None = None,
    direction: Sequence[Mapping[str, Any]] | None = None,
) -> list[bytes]:
    """One SolverRequest per row in ``indices``: the original inputs, masks and provenance.

    Everything a fallback solver needs to answer without asking back; the route ("solver")
    is implied by the topic. ``policy`` and ``direction`` as in ``encode_batch``: the
    direction tells the solver which way the answer lies.
    """
    if not indices:
        return []
    _check_lengths(result, samples=samples, sources=sources)
    masks = _mask_rows(result, indices)
    labels = _sample_labels(result, indices)
    ref = _bundle_dict(bundle)
    named = _policy_dict(policy)
    out: list[bytes] = []
    for j, i in enumerate(indices):
        record = _envelope(samples[i], sources[i], ref, named)
        record["inputs"] = samples[i].raw_inputs
        record["provenance"] = labels[j]
        record["masks"] = {name: values[j] for name, values in masks.items()}
        record["direction"] = direction[i] if direction is not None else None
        out.append(orjson.dumps(record))
    return out
