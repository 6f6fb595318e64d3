"""Load a bundle directory: read once, verify, and build the session from the verified bytes.

This is the I/O shell around :mod:`worker.bundle.validation`. Every file is read exactly once;
the bytes that were hashed are the bytes ONNX Runtime receives, so nothing can swap the model
between verification and loading.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.bundle import graph as graph_mod
from worker.bundle.manifest import (
    METADATA_FILE,
    manifest_sha256,
    normalize_digest,
    parse_manifest,
    parse_sidecar,
)
from worker.bundle.validation import (
    Contract,
    Header,
    check_contract,
    check_header,
    check_integrity,
    check_model_file_name,
)
from worker.errors import (
    BundleError,
    BundleIntegrityError,
    BundleInvalidError,
    UnverifiedBundleError,
)

if TYPE_CHECKING:
    import onnx  # imported by worker.bundle.graph when a graph is read

SIDECAR_FILE = "metadata.sha256"


@dataclass(frozen=True, slots=True)
class VerifiedBundle:
    """A bundle whose manifest passed validation, with the exact model bytes that were checked."""

    path: Path
    manifest: dict[str, Any]
    header: Header
    contract: Contract
    digest: str
    model_file: str
    model_sha256: str
    model: onnx.ModelProto
    model_bytes: bytes
    external_files: tuple[graph_mod.ExternalFile, ...]
    sidecar_digest: str | None
    warnings: tuple[str, ...] = field(default=())

    @property
    def verified(self) -> bool:
        """Schema >= 2: the model's size and SHA-256 are pinned by the manifest."""
        return self.header.schema_version >= 2


def _read_regular(bundle: Path, relative: str, field_name: str) -> bytes:
    """Read ``relative`` inside ``bundle``, refusing symlinks anywhere along the path."""
    current = bundle
    parts = [p for p in relative.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise BundleInvalidError(METADATA_FILE, field_name, "a path inside the bundle", relative)
    for i, part in enumerate(parts):
        current = current / part
        try:
            info = os.lstat(current)
        except FileNotFoundError as exc:
            raise BundleInvalidError(
                relative, field_name, "an existing file inside the bundle", "no such file"
            ) from exc
        if stat.S_ISLNK(info.st_mode):
            raise BundleInvalidError(
                relative,
                field_name,
                "no symlink along the path",
                f"symlink at {'/'.join(parts[: i + 1])}",
            )
    if not stat.S_ISREG(info.st_mode):
        raise BundleInvalidError(relative, field_name, "a regular file", "not a regular file")
    # O_NOFOLLOW closes the gap between the lstat walk and the open for the final component.
    fd = os.open(current, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def read_manifest(path: Path) -> dict[str, Any]:
    """Read and strictly parse ``metadata.json`` of the bundle at ``path``."""
    if not path.is_dir():
        raise BundleInvalidError(
            str(path),
            "(bundle)",
            "a bundle directory",
            "no such directory" if not path.exists() else "not a directory",
        )
    meta_path = path / METADATA_FILE
    if not meta_path.is_file():
        raise BundleInvalidError(METADATA_FILE, "(file)", "present", "missing")
    return parse_manifest(meta_path.read_bytes())


def verify_bundle(
    path: str | os.PathLike[str],
    *,
    allow_unverified_legacy: bool = False,
    expected_digest: str | None = None,
) -> VerifiedBundle:
    """Run the whole validation list, the digest pin and the legacy gate; read files once."""
    bundle = Path(path)
    meta = read_manifest(bundle)
    header = check_header(meta)
    model_file = check_model_file_name(meta)
    model_bytes = _read_regular(bundle, model_file, "model_file")
    model_sha = hashlib.sha256(model_bytes).hexdigest()
    check_integrity(meta, header, model_file, model_bytes, model_sha)
    contract = check_contract(meta, header)
    digest = manifest_sha256(meta)
    warnings = list(contract.warnings)

    if expected_digest is not None and normalize_digest(expected_digest) != digest:
        raise BundleIntegrityError(
            METADATA_FILE, "manifest digest (pinned)", normalize_digest(expected_digest), digest
        )
    if header.schema_version < 2:
        if not allow_unverified_legacy:
            raise UnverifiedBundleError(
                METADATA_FILE,
                "schema_version",
                ">= 2 (model size and SHA-256 recorded)",
                meta.get("schema_version", "absent (legacy schema 1)"),
                hint="pass --allow-unverified-legacy to run it anyway, or migrate it to v2",
            )
        warnings.append(
            f"{METADATA_FILE}: unverified legacy bundle (schema 1): the model file "
            "is not covered by any hash"
        )

    sidecar = None
    sidecar_path = bundle / SIDECAR_FILE
    if sidecar_path.is_file() and not sidecar_path.is_symlink():
        sidecar = parse_sidecar(sidecar_path.read_bytes())
        if sidecar != digest:
            warnings.append(
                f"{SIDECAR_FILE}: does not hold the manifest digest {digest} "
                "(informational only; trust comes from a pinned digest)"
            )

    try:
        model = graph_mod.parse_model(model_bytes)
    except Exception as exc:  # protobuf raises its own DecodeError; any failure means garbage
        raise BundleInvalidError(
            model_file, "(file)", "an ONNX model", f"unparseable: {exc}"
        ) from exc
    externals = _inline_external(bundle, model_file, model)
    data_file = bundle / f"{model_file}.data"
    if data_file.is_file() and f"{Path(model_file).name}.data" not in {e.name for e in externals}:
        warnings.append(
            f"{data_file.name}: present ({data_file.stat().st_size} bytes) but not referenced by "
            "the graph; ignored, and not covered by the manifest"
        )
    for ext in externals:
        warnings.append(
            f"{ext.name}: external tensor data ({ext.size} bytes, sha256 {ext.sha256}) is not "
            "covered by the manifest or by model_sha256"
        )
    return VerifiedBundle(
        path=bundle,
        manifest=meta,
        header=header,
        contract=contract,
        digest=digest,
        model_file=model_file,
        model_sha256=model_sha,
        model=model,
        model_bytes=model_bytes,
        external_files=tuple(externals),
        sidecar_digest=sidecar,
        warnings=tuple(warnings),
    )


def _inline_external(
    bundle: Path, model_file: str, model: onnx.ModelProto
) -> list[graph_mod.ExternalFile]:
    base = str(Path(model_file).parent)

    def read(location: str) -> bytes:
        relative = location if base in ("", ".") else f"{base}/{location}"
        return _read_regular(bundle, relative, "external_data.location")

    try:
        return graph_mod.inline_external_data(model, read)
    except BundleError:
        raise
    except (ValueError, KeyError) as exc:
        raise BundleInvalidError(
            model_file, "external_data", "tensor data inside the bundle", str(exc)
        ) from exc
