"""Results and solver requests as JSON bytes, one batch at a time (pure code).

``decoded`` is ``null`` on every component of a bottom entry: a bottom is never published as a
number. orjson also writes any stray NaN as ``null``, a second fence behind the adapters'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from worker.inference.decode import denominator_view
from worker.inference.result import StrictResult
from worker.wire.decode import Sample

MASKS = ("bottom_mask", "gap_mask", "fault_mask", "semantic_bottom_mask")


@dataclass(frozen=True, slots=True)
class Source:
    """Where the input message came from; makes duplicates recognisable."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class BundleRef:
    """Which bundle produced a result."""

    id: str
    schema_version: int
    strict_inference_schema_version: int


def sample_provenance(fault: bool, semantic: bool, available: bool) -> str:
    """Sample-level provenance label for a bottom sample's flags (contract §7)."""
    if not (fault or semantic):
        return "none"
    if not available:
        return "unavailable"
    if fault and semantic:
        return "mixed"
    return "fault" if fault else "semantic"


def _decoded_lists(result: StrictResult) -> list[Any]:
    decoded = result.decoded
    view = denominator_view(decoded.shape, result.bottom_mask)
    bottom = np.broadcast_to(result.bottom_mask.reshape(view.shape), decoded.shape)
    if not bottom.any():
        out: list[Any] = decoded.tolist()
        return out
    boxed = decoded.astype(object)
    boxed[bottom] = None
    nulled: list[Any] = boxed.tolist()
    return nulled


def _sample_provenance(result: StrictResult) -> list[str]:
    bottom = result.per_sample("bottom_mask")
    fault = result.per_sample("fault_mask") & bottom
    semantic = result.per_sample("semantic_bottom_mask") & bottom
    semantic |= bottom & ~fault & ~semantic  # a bottom with neither flag counts as semantic
    return [
        "none" if not b else sample_provenance(f, s, result.provenance_available)
        for b, f, s in zip(bottom.tolist(), fault.tolist(), semantic.tolist(), strict=True)
    ]


def _columns(result: StrictResult) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {name: getattr(result, name).tolist() for name in MASKS}
    codes = result.bottom_provenance.tolist() if result.provenance_available else None
    columns["bottom_provenance"] = codes if codes is not None else [None] * result.batch_size
    return columns


def _header(sample: Sample, source: Source, bundle: BundleRef) -> dict[str, Any]:
    return {
        "message_id": sample.message_id,
        "device_id": sample.device_id,
        "ts": sample.ts,
        "context": sample.context,
        "source": {"topic": source.topic, "partition": source.partition, "offset": source.offset},
        "bundle": {
            "id": bundle.id,
            "schema_version": bundle.schema_version,
            "strict_inference_schema_version": bundle.strict_inference_schema_version,
        },
    }


def encode_batch(
    samples: Sequence[Sample],
    sources: Sequence[Source],
    result: StrictResult,
    routes: Sequence[str],
    bundle: BundleRef,
    processed_at: float,
) -> list[bytes]:
    """One Result per sample, in order; row i of every field belongs to ``samples[i]``."""
    decoded = _decoded_lists(result)
    columns = _columns(result)
    bottom = result.per_sample("bottom_mask").tolist()
    gap = result.per_sample("gap_mask").tolist()
    provenance = _sample_provenance(result)
    out = []
    for i, sample in enumerate(samples):
        record = _header(sample, sources[i], bundle)
        record["outputs"] = {"decoded": decoded[i], **{k: v[i] for k, v in columns.items()}}
        record["bottom"] = bottom[i]
        record["gap"] = gap[i] and not bottom[i]
        record["provenance"] = provenance[i]
        record["route"] = routes[i]
        record["processed_at"] = processed_at
        out.append(orjson.dumps(record))
    return out


def encode_solver_requests(
    samples: Sequence[Sample],
    sources: Sequence[Source],
    result: StrictResult,
    indices: Sequence[int],
    bundle: BundleRef,
) -> list[bytes]:
    """One SolverRequest per routed row: everything a fallback needs to answer alone."""
    if not indices:
        return []
    columns = _columns(result)
    provenance = _sample_provenance(result)
    out = []
    for i in indices:
        record = _header(samples[i], sources[i], bundle)
        record["inputs"] = samples[i].raw_inputs
        record["provenance"] = provenance[i]
        record["masks"] = {k: v[i] for k, v in columns.items()}
        out.append(orjson.dumps(record))
    return out
