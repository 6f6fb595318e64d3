"""The wire contract as pydantic models: the source of the JSON Schemas in ``schemas/``.

Not on the hot path: decode.py and encode.py implement the same contract with plain code, and
the tests validate what they produce against these models. Output records forbid extra
fields so that a field added in code but not here fails the tests; the feature message
ignores unknown fields so that producers can add their own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt
from typing_extensions import TypeAliasType

from worker.wire.decode import ErrorCode

# Strict leaves: a mask entry 1 or a reading "1.5" is a contract break, not a coercion.
NestedNumbers = TypeAliasType("NestedNumbers", "StrictFloat | list[NestedNumbers] | None")
NestedBooleans = TypeAliasType("NestedBooleans", "StrictBool | list[NestedBooleans]")
NestedIntegers = TypeAliasType("NestedIntegers", "StrictInt | list[NestedIntegers]")

Provenance = Literal["none", "fault", "semantic", "mixed", "unavailable"]
Route = Literal["accept", "solver", "reject"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FeatureMessage(_Frozen):
    """Input topic; key = device_id; one UTF-8 JSON object per message."""

    model_config = ConfigDict(extra="ignore", title="scm-worker feature message")

    message_id: str = Field(min_length=1, max_length=128)
    device_id: str = Field(min_length=1, max_length=128)
    inputs: dict[str, NestedNumbers] = Field(
        description="one entry per bundle input name, no more, no fewer: nested numbers in the "
        "bundle's per-sample shape (batch axis left out). null and the non-standard tokens "
        "NaN, Infinity, -Infinity are broken readings: they reach the model and come out as "
        "fault bottoms. At most 65,536 numbers per message and 16 levels of nesting."
    )
    ts: float | datetime | None = Field(
        default=None,
        description="epoch seconds, or RFC 3339 (a time without offset is read as UTC)",
    )
    context: dict[str, Any] | None = Field(
        default=None, description="at most 4 KiB serialized; passed through untouched"
    )


class Source(_Frozen):
    """Coordinates of the input message: a duplicate after a crash has the same source."""

    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)


class BundleRef(_Frozen):
    """The bundle that produced the record."""

    id: str = Field(description="manifest digest (SHA-256 of the canonical metadata.json)")
    schema_version: int
    strict_inference_schema_version: int


class PolicyRef(_Frozen):
    """The inference policy a batch ran under (a batch never mixes policies)."""

    name: str
    revision: str
    sha256: str = Field(description="SHA-256 of the policy file's bytes")


class Masks(_Frozen):
    """Per-entry masks in the denominator's shape: per element, or one per sample."""

    bottom_mask: NestedBooleans = Field(description="bottom: fault OR semantic; authoritative")
    gap_mask: NestedBooleans = Field(description="accepted, |Q| in [tau_infer, tau_train)")
    fault_mask: NestedBooleans = Field(description="bottom because something was non-finite")
    semantic_bottom_mask: NestedBooleans = Field(description="bottom because |Q| < tau_infer")
    bottom_provenance: NestedIntegers | None = Field(
        description="0 finite, 1 fault, 2 semantic, 3 both; null when the bundle's adapter "
        "cannot measure provenance"
    )


class Outputs(Masks):
    """The masks plus the decoded values."""

    decoded: NestedNumbers = Field(
        description="P/Q in the numerator's shape; null on every component of a bottom entry "
        "(a bottom is never published as a number)"
    )


class Direction(_Frozen):
    """Which way the answer lies, from a calibrated direction head (contract section 10)."""

    class_id: Literal[0, 1, 2] = Field(
        description="0 below (censored low), 1 in range or unknown, 2 above (censored high); "
        "non-bottom and fault samples are 1, and so is a bottom whose calibrated confidence "
        "is below the reject threshold"
    )
    label: Literal["below", "in_range", "above"]
    confidence: StrictFloat | None = Field(
        description="the head's calibrated max probability on this sample; null when "
        "not finite (never accepted)"
    )
    calibrator: Literal["device", "global"] = Field(
        description="which calibrator scored it: the device's own, or the global one (any "
        "device without its own; the identity when no calibrator store is configured)"
    )


class _Record(_Frozen):
    message_id: str = Field(min_length=1, max_length=128)
    device_id: str = Field(min_length=1, max_length=128)
    ts: float | None = Field(description="the message's ts as epoch seconds; null if absent")
    context: dict[str, Any] | None = Field(description="the message's context, untouched")
    source: Source
    bundle: BundleRef
    policy: PolicyRef | None = Field(
        description="the inference policy in force; null when the worker runs without one"
    )
    direction: Direction | None = Field(
        description="which way the answer lies, from the direction head; null when the "
        "worker runs without one"
    )


class Result(_Record):
    """Results topic; same key; exactly one per valid input message, rejected ones included."""

    model_config = ConfigDict(title="scm-worker result")

    outputs: Outputs
    bottom: bool = Field(description="any entry of the sample is bottom")
    gap: bool = Field(description="any entry is in the gap band; false on a bottom sample")
    provenance: Provenance = Field(
        description="sample level (contract section 7): none when not bottom; unavailable "
        "when the adapter cannot measure it"
    )
    route: Route
    processed_at: float = Field(description="epoch seconds")


class SolverRequest(_Record):
    """Solver topic; same key; one per sample routed to the solver (the route is implied)."""

    model_config = ConfigDict(title="scm-worker solver request")

    inputs: dict[str, NestedNumbers] = Field(
        description="the feature message's inputs as sent (NaN/Infinity readings become null)"
    )
    provenance: Provenance
    masks: Masks


class DeadLetterHeaders(_Frozen):
    """Dead-letter topic: the original key and value bytes, plus these headers.

    Header values are UTF-8 bytes; the schema shows them as the strings they decode to.
    """

    model_config = ConfigDict(title="scm-worker dead-letter headers", populate_by_name=True)

    scm_error_code: ErrorCode = Field(alias="scm-error-code")
    scm_error: str = Field(
        alias="scm-error",
        description="readable reason naming what was expected and what was found; "
        "at most 1 KiB of UTF-8",
    )
    scm_source_topic: str = Field(alias="scm-source-topic")
    scm_source_partition: str = Field(alias="scm-source-partition", pattern=r"^[0-9]+$")
    scm_source_offset: str = Field(alias="scm-source-offset", pattern=r"^[0-9]+$")
    scm_value_truncated: str | None = Field(
        default=None,
        alias="scm-value-truncated",
        pattern=r"^[0-9]+$",
        description="present when the value was over 900,000 bytes: the original size in "
        "bytes; the value is then its first 900,000 bytes",
    )


class RequestCoordinates(_Frozen):
    """Where the solver read the request: answers to a re-read request share these."""

    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)


class SolverAnswer(_Frozen):
    """Solver answers topic (``scm-worker solver``); key = the request's key; one per request."""

    model_config = ConfigDict(title="scm-worker solver answer")

    message_id: str | None = Field(description="the request's; null if it was unreadable")
    device_id: str | None
    source: Source | None = Field(description="the feature message's coordinates")
    request: RequestCoordinates
    status: Literal["solved", "unsolvable"]
    answer: list[StrictFloat] | None = Field(
        description="joint steps (dtheta1, dtheta2) in radians; null unless solved"
    )
    reason: str | None = Field(description="why there is no answer; null when solved")
    method: Literal["damped_least_squares"]
    damping: StrictFloat = Field(gt=0)
    solved_at: float = Field(description="epoch seconds")
