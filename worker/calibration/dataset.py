"""Labelled head scores from a replay run directory (``replay --direction-head``) and a labels file.

Labels file: JSON lines ``{"message_id": "...", "label": "below"}`` or a CSV with a
``message_id,label`` header; labels are the head's column labels. Rows whose label is not one of
the head's (``in_range`` for a binary head), and rows whose logits are not finite, are left out
and counted.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from worker.calibration.direction import DirectionPolicy
from worker.calibration.store import CalibratorStore
from worker.errors import ConfigError


@dataclass(frozen=True)
class Labelled:
    """Head logits with true columns, devices and timestamps, and what they were scored by."""

    logits: npt.NDArray[np.float64]
    truth: npt.NDArray[np.int64]
    device_ids: list[str]
    stamps: list[float]
    bundle_digest: str
    head_sha256: str
    labels: tuple[str, ...]
    unlabelled: int
    other_label: int
    nonfinite: int

    def calibrated(self, store: CalibratorStore) -> tuple[npt.NDArray[np.float64], list[str]]:
        """Probabilities through the worker's own lookup: the device's calibrator, else global."""
        return DirectionPolicy(self.labels, store).calibrated(self.logits, self.device_ids)


def read_labels(path: Path) -> dict[str, str]:
    """message_id -> label, from JSON lines or CSV; duplicates and blanks are errors."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--labels {path}: expected a readable UTF-8 file, found {exc}") from exc
    rows: list[tuple[int, Any]] = []
    if path.suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        if reader.fieldnames is None or not {"message_id", "label"} <= set(reader.fieldnames):
            raise ConfigError(
                f"--labels {path}: expected a CSV header with message_id,label, "
                f"found {reader.fieldnames}"
            )
        rows = list(enumerate(reader, start=2))
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append((number, json.loads(line)))
                except ValueError as exc:
                    raise ConfigError(
                        f"--labels {path}:{number}: expected JSON, found {exc}"
                    ) from exc
    out: dict[str, str] = {}
    for number, row in rows:
        if (
            not isinstance(row, dict)
            or not isinstance(row.get("message_id"), str)
            or not (isinstance(row.get("label"), str))
        ):
            raise ConfigError(
                f"--labels {path}:{number}: expected message_id and label strings, found {row!r}"
            )
        if row["message_id"] in out:
            raise ConfigError(
                f"--labels {path}:{number}: message_id {row['message_id']!r} labelled twice"
            )
        out[row["message_id"]] = row["label"]
    return out


def load_labelled(run_dir: Path, labels_path: Path) -> Labelled:
    """Join the replay's rows with the labels; refuse a run without head logits."""
    where = f"--replay {run_dir}"
    try:
        summary = json.loads((run_dir / "run.json").read_text())
        head = summary.get("direction_head")
        if not head:
            raise ConfigError(
                f"{where}: expected a replay made with --direction-head (head_logits.npy), "
                "found none"
            )
        logits = np.load(run_dir / "head_logits.npy", allow_pickle=False)
        with np.load(run_dir / "outputs.npz", allow_pickle=False) as data:
            ids = data["message_id"].tolist()
            devices = data["device_id"].tolist()
            stamps = data["ts"].tolist() if "ts" in data.files else [np.nan] * len(ids)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(
            f"{where}: expected run.json, outputs.npz and head_logits.npy, found {exc}"
        ) from exc
    if logits.shape[0] != len(ids):
        raise ConfigError(
            f"{where}: head_logits.npy: expected {len(ids)} rows like "
            f"outputs.npz, found {logits.shape[0]}"
        )
    labels = tuple(head["labels"])
    given = read_labels(labels_path)
    finite = np.isfinite(logits).all(axis=1).tolist()
    rows, truth, other, nonfinite = [], [], 0, 0
    for row, message_id in enumerate(ids):
        label = given.get(message_id)
        if label is None:
            continue
        if label not in labels:
            other += 1
            continue
        if not finite[row]:
            nonfinite += 1  # e.g. a broken reading: the head has nothing to say
            continue
        rows.append(row)
        truth.append(labels.index(label))
    if not rows:
        raise ConfigError(
            f"--labels {labels_path}: expected labels for messages of {run_dir} "
            f"among {list(labels)}, found none"
        )
    return Labelled(
        logits=np.asarray(logits[rows], dtype=np.float64),
        truth=np.asarray(truth, dtype=np.int64),
        device_ids=[devices[r] for r in rows],
        stamps=[stamps[r] for r in rows],
        bundle_digest=summary["bundle"]["manifest_sha256"],
        head_sha256=head["sha256"],
        labels=labels,
        unlabelled=len(ids) - len(rows) - other - nonfinite,
        other_label=other,
        nonfinite=nonfinite,
    )
