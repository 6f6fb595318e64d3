"""Strict parsing and the canonical digest of ``metadata.json`` (contract sections 2.1, 3.2).

The digest must agree byte for byte with zeroproofml, which hashes what Python's ``json.dumps``
prints for the parsed object. We therefore use the standard library's ``json`` here and not
orjson: orjson formats floats and large integers differently.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from worker.errors import BundleInvalidError

METADATA_FILE = "metadata.json"


def _refuse_constant(token: str) -> Any:
    raise BundleInvalidError(
        METADATA_FILE, "(document)", "strict JSON without NaN/Infinity tokens", token
    )


def _parse_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        # zeroproofml parses 1e400 as inf and then fails while hashing; we fail at the source.
        raise BundleInvalidError(
            METADATA_FILE,
            "(document)",
            "numbers that fit a double",
            literal,
            hint="the literal overflows to infinity",
        )
    return value


def parse_manifest(raw: bytes) -> dict[str, Any]:
    """Parse ``metadata.json`` bytes strictly; duplicate keys resolve last-wins like zeroproofml."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleInvalidError(
            METADATA_FILE, "(document)", "UTF-8 text", f"invalid byte at offset {exc.start}"
        ) from exc
    try:
        obj = json.loads(text, parse_constant=_refuse_constant, parse_float=_parse_float)
    except json.JSONDecodeError as exc:
        raise BundleInvalidError(
            METADATA_FILE,
            "(document)",
            "a JSON document",
            f"{exc.msg} at line {exc.lineno} column {exc.colno}",
        ) from exc
    if not isinstance(obj, dict):
        raise BundleInvalidError(METADATA_FILE, "(document)", "a JSON object", type(obj).__name__)
    return obj


def canonical_manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """The exact bytes zeroproofml hashes: sorted keys, no whitespace, raw UTF-8, repr floats."""
    try:
        text = json.dumps(
            manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        return text.encode("utf-8")
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise BundleInvalidError(
            METADATA_FILE, "(document)", "a manifest with a canonical JSON form", str(exc)
        ) from exc


def manifest_sha256(manifest: dict[str, Any]) -> str:
    """Lowercase hex SHA-256 of the canonical manifest bytes: the bundle's identity."""
    return hashlib.sha256(canonical_manifest_bytes(manifest)).hexdigest()


def normalize_digest(value: str) -> str:
    """Pins compare case-insensitively with surrounding whitespace ignored, as zeroproofml does."""
    return value.strip().lower()


def parse_sidecar(raw: bytes) -> str | None:
    """Read the digest out of ``metadata.sha256``; informational only, never a trust anchor.

    zeroproofml 0.6.1 writes ``<hex>  metadata.json`` followed by a literal backslash-n.
    """
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    head = text.split(" ", 1)[0].lower()
    if len(head) == 64 and all(c in "0123456789abcdef" for c in head):
        return head
    return None
