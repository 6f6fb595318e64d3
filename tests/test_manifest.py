"""Strict parsing and the canonical manifest digest (contract sections 2.1 and 3.2)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import FIXTURES
from worker.bundle import canonical_manifest_bytes, manifest_sha256, parse_manifest
from worker.bundle.manifest import parse_sidecar
from worker.errors import BundleInvalidError

VECTORS = json.loads((FIXTURES / "validation_probes" / "canonical_json_vectors.json").read_text())


class TestCanonicalDigest:
    """Canonical bytes and digests equal zeroproofml's test vectors byte for byte."""

    @pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["input_json_text"][:40])
    def test_vector(self, vector: dict[str, str]) -> None:
        """Same bytes, same digest; an out-of-range float is refused like zeroproofml refuses it."""
        raw = vector["input_json_text"].encode()
        if "error" in vector:
            with pytest.raises(BundleInvalidError):
                canonical_manifest_bytes(parse_manifest(raw))
            return
        manifest = parse_manifest(raw)
        assert canonical_manifest_bytes(manifest).hex() == vector["canonical_hex"]
        assert manifest_sha256(manifest) == vector["sha256"]


class TestStrictParsing:
    """What zeroproofml's strict parser refuses, we refuse, with the file named."""

    @pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
    def test_non_finite_tokens(self, token: str) -> None:
        """Bare NaN/Infinity tokens are not JSON."""
        with pytest.raises(BundleInvalidError, match=r"metadata\.json"):
            parse_manifest(f'{{"tau_infer": {token}}}'.encode())

    @pytest.mark.parametrize("raw", [b"[1, 2]", b'"text"', b"{", b"\xff\xfe{}"])
    def test_not_an_object(self, raw: bytes) -> None:
        """Arrays, strings, truncated JSON and non-UTF-8 bytes are refused."""
        with pytest.raises(BundleInvalidError):
            parse_manifest(raw)

    def test_duplicate_keys_last_wins(self) -> None:
        """Python's json keeps the last duplicate; so must we, or digests diverge."""
        assert parse_manifest(b'{"a": 1, "a": 2}') == {"a": 2}


class TestSidecar:
    """metadata.sha256 is read for information only, tolerating zeroproofml's literal \\n."""

    def test_literal_backslash_n(self) -> None:
        """The 81-byte sidecar zeroproofml writes yields its digest."""
        raw = (FIXTURES / "v061_scalar_rational" / "bundle" / "metadata.sha256").read_bytes()
        assert len(raw) == 81
        assert parse_sidecar(raw) == (
            "4909ed6425c9e02757c12f2115b8669a6a78a341ecbb49596e92ee860f0c691c"
        )

    def test_garbage(self) -> None:
        """Garbage is no digest."""
        assert parse_sidecar(b"hello") is None
