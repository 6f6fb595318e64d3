"""Calibrator store: a global calibrator plus per-device ones, bound to a bundle and a head.

Layout (a directory, written once and never rewritten in place)::

    <store>/
      store.json              manifest: format, bundle_digest, head_sha256, classes, method,
                              route, created_at, eligibility, devices {device_id: file id}
      global.json             a calibrator file
      devices/<id>.json       one per device; <id> = sha256(device_id)[:16], never the raw id

Loading validates every file before anything is used: unknown keys, wrong types (no string to
number coercion), out-of-range values, a class list that is not the head's, a device whose
file id is not the hash of its name, or a listed device whose file is missing are all refused
with the file and field named. A store fitted for another bundle or another head is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from worker.calibration.calibrators import Calibrator, Identity, Isotonic, Route, Temperature
from worker.errors import ConfigError

FORMAT = 1
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
FileId = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
Scope = Literal["device", "global"]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class KnotList(_Strict):
    """One class's isotonic map."""

    x: list[StrictFloat | StrictInt]
    y: list[StrictFloat | StrictInt]


class CalibratorFile(_Strict):
    """``global.json`` and ``devices/<id>.json``."""

    format: Literal[1]
    type: Literal["identity", "temperature", "isotonic"]
    route: Literal["probabilities", "logits"] = "probabilities"
    classes: list[StrictStr] = Field(min_length=2)
    temperature: StrictFloat | StrictInt | None = None
    knots: list[KnotList] | None = None


class Eligibility(_Strict):
    """The thresholds a device had to pass to get its own calibrator."""

    min_samples: StrictInt = Field(ge=1)
    min_days: StrictInt = Field(ge=1)
    min_distinct_labels: StrictInt = Field(ge=1)


class StoreManifest(_Strict):
    """``store.json``."""

    format: Literal[1]
    bundle_digest: Sha256
    head_sha256: Sha256
    classes: list[StrictStr] = Field(min_length=2)
    method: Literal["identity", "temperature", "isotonic"]
    route: Literal["probabilities", "logits"] = "probabilities"
    created_at: StrictStr
    eligibility: Eligibility | None = None
    devices: dict[StrictStr, FileId]
    device_count: StrictInt = Field(ge=0)


def device_file_id(device_id: str) -> str:
    """The file name stem for a device: a hash, so no id can become a path."""
    return hashlib.sha256(device_id.encode("utf-8")).hexdigest()[:16]


def calibrator_from_file(data: CalibratorFile) -> Calibrator:
    """Build the calibrator a validated file describes; ValueError on inconsistent keys."""
    route: Route = data.route
    if data.type == "identity":
        if data.temperature is not None or data.knots is not None:
            raise ValueError("identity: expected no temperature and no knots")
        return Identity(len(data.classes), route)
    if data.type == "temperature":
        if data.temperature is None or data.knots is not None:
            raise ValueError("temperature: expected a temperature and no knots")
        return Temperature(float(data.temperature), route)
    if data.knots is None or data.temperature is not None:
        raise ValueError("isotonic: expected knots and no temperature")
    if len(data.knots) != len(data.classes):
        raise ValueError(
            f"knots: expected one list per class ({len(data.classes)}), found {len(data.knots)}"
        )
    return Isotonic(
        tuple((tuple(map(float, k.x)), tuple(map(float, k.y))) for k in data.knots), route
    )


def calibrator_to_file(calibrator: Calibrator, classes: list[str]) -> dict[str, Any]:
    """The JSON object of a calibrator file."""
    return {
        "format": FORMAT,
        "type": calibrator.kind,
        "route": calibrator.route,
        "classes": list(classes),
        **calibrator.to_json(),
    }


@dataclass(frozen=True)
class CalibratorStore:
    """A loaded, fully validated store."""

    path: Path
    store_id: str
    manifest: StoreManifest
    global_calibrator: Calibrator
    devices: Mapping[str, Calibrator] = field(default_factory=dict)

    def lookup(self, device_id: str) -> tuple[Calibrator, Scope]:
        """The device's own calibrator, else the global one (an unknown device is normal)."""
        own = self.devices.get(device_id)
        return (own, "device") if own is not None else (self.global_calibrator, "global")


def _read_json(path: Path, model: type[BaseModel], where: str) -> Any:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{where}: expected a readable file, found {exc.strerror}") from exc
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(document)"
        raise ConfigError(f"{where}: {loc}: {first['msg']}, found {first.get('input')!r}") from exc


def _load_calibrator(path: Path, classes: list[str], method: str, route: str) -> Calibrator:
    data: CalibratorFile = _read_json(path, CalibratorFile, str(path))
    if data.classes != classes:
        raise ConfigError(
            f"{path}: classes: expected {classes} like store.json, found {data.classes}"
        )
    if data.route != route:
        raise ConfigError(
            f"{path}: route: expected {route!r} like store.json, found {data.route!r}"
        )
    if data.type != method:
        raise ConfigError(f"{path}: type: expected {method!r} like store.json, found {data.type!r}")
    try:
        return calibrator_from_file(data)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def load_store(
    path: Path, *, bundle_digest: str, head_sha256: str, classes: list[str]
) -> CalibratorStore:
    """Read and validate every file of a store, or raise one ConfigError naming the problem."""
    where = f"calibrator store {path}"
    if not path.is_dir():
        raise ConfigError(f"{where}: expected a directory, found nothing")
    manifest_path = path / "store.json"
    manifest: StoreManifest = _read_json(manifest_path, StoreManifest, str(manifest_path))
    if manifest.bundle_digest != bundle_digest:
        raise ConfigError(
            f"{manifest_path}: bundle_digest: expected the running bundle's {bundle_digest}, "
            f"found {manifest.bundle_digest} (the store was fitted for another bundle)"
        )
    if manifest.head_sha256 != head_sha256:
        raise ConfigError(
            f"{manifest_path}: head_sha256: expected the direction head's {head_sha256}, "
            f"found {manifest.head_sha256} (the store was fitted for another head)"
        )
    if manifest.classes != classes:
        raise ConfigError(
            f"{manifest_path}: classes: expected the head's {classes}, found {manifest.classes}"
        )
    if manifest.device_count != len(manifest.devices):
        raise ConfigError(
            f"{manifest_path}: device_count: expected {len(manifest.devices)} like devices, "
            f"found {manifest.device_count}"
        )
    load = (classes, manifest.method, manifest.route)
    global_calibrator = _load_calibrator(path / "global.json", *load)
    devices: dict[str, Calibrator] = {}
    for device_id, file_id in manifest.devices.items():
        if file_id != device_file_id(device_id):
            raise ConfigError(
                f"{manifest_path}: devices[{device_id!r}]: expected file id "
                f"{device_file_id(device_id)} (sha256 of the id), found {file_id}"
            )
        devices[device_id] = _load_calibrator(path / "devices" / f"{file_id}.json", *load)
    store_id = hashlib.sha256(manifest_path.read_bytes()).hexdigest()
    return CalibratorStore(path, store_id, manifest, global_calibrator, devices)


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.write(json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def write_store(
    out: Path,
    manifest: Mapping[str, Any],
    global_calibrator: Calibrator,
    devices: Mapping[str, Calibrator],
) -> Path:
    """Write a new store directory atomically (temp directory, fsync, rename); never overwrite.

    ``manifest`` holds every store.json key except ``format``, ``devices``, ``device_count``.
    """
    if out.exists():
        raise ConfigError(
            f"--out {out}: expected a new directory (stores are immutable), found an existing path"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        classes = list(manifest["classes"])
        _write_json(staging / "global.json", calibrator_to_file(global_calibrator, classes))
        index = {device: device_file_id(device) for device in sorted(devices)}
        if devices:
            (staging / "devices").mkdir()
        for device, file_id in index.items():
            _write_json(
                staging / "devices" / f"{file_id}.json",
                calibrator_to_file(devices[device], classes),
            )
        body = {**manifest, "format": FORMAT, "devices": index, "device_count": len(index)}
        try:
            StoreManifest.model_validate(body)  # never write a store we would refuse to load
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ConfigError(
                f"store.json: {where}: {first['msg']}, found {first.get('input')!r}"
            ) from exc
        _write_json(staging / "store.json", body)
        os.replace(staging, out)
        fd = os.open(out.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
