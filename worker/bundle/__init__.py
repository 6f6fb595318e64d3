"""Bundle loading and verification (contract sections 1-4)."""

from worker.bundle.loader import VerifiedBundle, verify_bundle
from worker.bundle.manifest import canonical_manifest_bytes, manifest_sha256, parse_manifest

__all__ = [
    "VerifiedBundle",
    "canonical_manifest_bytes",
    "manifest_sha256",
    "parse_manifest",
    "verify_bundle",
]
