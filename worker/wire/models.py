"""The wire contract as pydantic models: the source of the JSON Schemas in ``schemas/``.

Not on the hot path: decode.py and encode.py implement the same contract with plain code;
the tests validate their output against these models.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Nested = Any  # nested arrays in the bundle's per-sample shape


class FeatureMessage(BaseModel):
    """Input topic; key = device_id; UTF-8 JSON."""

    model_config = ConfigDict(extra="ignore", title="scm-worker feature message")

    message_id: str = Field(min_length=1, max_length=128)
    device_id: str = Field(min_length=1, max_length=128)
    inputs: dict[str, Nested] = Field(
        description="one entry per bundle input name: nested numbers (null = broken reading, "
        "NaN/Infinity tokens accepted), the bundle's per-sample shape, no batch axis"
    )
    ts: float | str | None = Field(default=None, description="epoch seconds or RFC 3339")
    context: dict[str, Any] | None = Field(
        default=None, description="at most 4 KiB serialized; passed through untouched"
    )


class Source(BaseModel):
    """Coordinates of the input message: a duplicate after a crash has the same source."""

    topic: str
    partition: int
    offset: int


class BundleRef(BaseModel):
    """The bundle that produced the record."""

    id: str = Field(description="manifest digest (sha256 of canonical metadata.json)")
    schema_version: int
    strict_inference_schema_version: int


class Masks(BaseModel):
    """Per-entry masks in the denominator's shape (per element, or per sample)."""

    bottom_mask: Nested
    gap_mask: Nested
    fault_mask: Nested
    semantic_bottom_mask: Nested
    bottom_provenance: Nested | None = Field(
        description="0 finite, 1 fault, 2 semantic, 3 mixed; null when unavailable"
    )


class Outputs(Masks):
    """Masks plus the decoded values."""

    decoded: Nested = Field(description="nested numbers; null on every component of a bottom")


Provenance = Literal["none", "fault", "semantic", "mixed", "unavailable"]


class _Record(BaseModel):
    message_id: str
    device_id: str
    ts: float | None
    context: dict[str, Any] | None
    source: Source
    bundle: BundleRef


class Result(_Record):
    """Results topic; same key; exactly one per valid input message."""

    model_config = ConfigDict(extra="forbid", title="scm-worker result")

    outputs: Outputs
    bottom: bool = Field(description="any entry of the sample is bottom")
    gap: bool = Field(description="any entry is in the gap band and the sample is not bottom")
    provenance: Provenance
    route: Literal["accept", "solver", "reject"]
    processed_at: float


class SolverRequest(_Record):
    """Solver topic; same key; one per sample routed to the solver."""

    model_config = ConfigDict(extra="forbid", title="scm-worker solver request")

    inputs: dict[str, Nested] = Field(description="the original inputs, as sent")
    provenance: Provenance
    masks: Masks


class DeadLetterHeaders(BaseModel):
    """Dead-letter topic: the original key and value bytes unchanged, plus these headers."""

    model_config = ConfigDict(title="scm-worker dead-letter headers", populate_by_name=True)

    scm_error_code: Literal[
        "invalid_json",
        "invalid_message",
        "unknown_input",
        "shape_mismatch",
        "too_large",
        "inference_failed",
    ] = Field(alias="scm-error-code")
    scm_error: str = Field(alias="scm-error", description="readable reason, at most 1 KiB")
    scm_source_topic: str = Field(alias="scm-source-topic")
    scm_source_partition: str = Field(alias="scm-source-partition")
    scm_source_offset: str = Field(alias="scm-source-offset")
