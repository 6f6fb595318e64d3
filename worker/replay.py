"""Replay recorded feature messages through a bundle: outputs, masks and |Q|, nothing produced.

The run directory is the input of a tau sweep (``q_abs.npy``) and an audit trail of what the
bundle said about real traffic.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from worker.inference import FIELDS, BundleRunner
from worker.inference.head import DirectionHeadRunner
from worker.loop import sample_specs
from worker.wire.decode import Rejection, Sample, decode_feature, stack_inputs
from worker.wire.limits import Limits

BATCH = 4096


@dataclass(frozen=True, slots=True)
class Recorded:
    """One recorded message and where it came from."""

    value: bytes | None
    source: str
    partition: int = -1
    offset: int = -1
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class ReplayRun:
    """Accumulates one replay."""

    runner: BundleRunner
    head: DirectionHeadRunner | None = None
    limits: Limits = field(default_factory=Limits)
    parts: dict[str, list[np.ndarray]] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    offsets: list[tuple[int, int]] = field(default_factory=list)
    dead: list[dict[str, Any]] = field(default_factory=list)
    q_parts: list[np.ndarray] = field(default_factory=list)
    logit_parts: list[np.ndarray] = field(default_factory=list)
    stamps: list[float] = field(default_factory=list)
    seen: int = 0

    def feed(self, records: Iterable[Recorded]) -> None:
        """Decode and score ``records`` in batches."""
        specs = sample_specs(self.runner)
        batch: list[tuple[Recorded, Sample]] = []
        for record in records:
            self.seen += 1
            decoded = decode_feature(record.value, specs, self.limits)
            if isinstance(decoded, Rejection):
                self.dead.append(
                    {
                        "source": record.source,
                        "partition": record.partition,
                        "offset": record.offset,
                        "code": str(decoded.code),
                        "reason": decoded.reason,
                    }
                )
                continue
            batch.append((record, decoded))
            if len(batch) >= BATCH:
                self._score(batch)
                batch = []
        if batch:
            self._score(batch)

    def _score(self, batch: list[tuple[Recorded, Sample]]) -> None:
        samples = [sample for _, sample in batch]
        feed = stack_inputs(samples, sample_specs(self.runner))
        result, q = self.runner.run_with_q(feed)
        if self.head is not None:
            self.logit_parts.append(self.head.run(feed[self.head.input_name]))
        self.stamps += [np.nan if s.ts is None else s.ts for s in samples]
        for name in FIELDS:
            self.parts.setdefault(name, []).append(getattr(result, name))
        if q is not None:
            self.q_parts.append(np.abs(q))
        self.ids += [s.message_id for s in samples]
        self.devices += [s.device_id for s in samples]
        self.offsets += [(r.partition, r.offset) for r, _ in batch]

    def write(self, out: Path, source: dict[str, Any]) -> dict[str, Any]:
        """``outputs.npz``, ``q_abs.npy`` (when readable), ``dead_letters.jsonl``, ``run.json``.

        With a direction head, also ``head_logits.npy`` (rows as in outputs.npz), the input of
        ``calibrate fit``.
        """
        out.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        for name in FIELDS:
            if self.parts.get(name):
                arrays[name] = np.concatenate(self.parts[name])
        arrays["message_id"] = np.asarray(self.ids, dtype=str)
        arrays["device_id"] = np.asarray(self.devices, dtype=str)
        arrays["ts"] = np.asarray(self.stamps, dtype=np.float64)
        arrays["source_partition_offset"] = np.asarray(self.offsets, dtype=np.int64).reshape(-1, 2)
        np.savez(out / "outputs.npz", **arrays)  # type: ignore[arg-type]
        if self.q_parts:
            np.save(out / "q_abs.npy", np.concatenate(self.q_parts))
        head = None
        if self.head is not None:
            width = self.head.width
            logits = np.concatenate(self.logit_parts) if self.logit_parts else np.zeros((0, width))
            np.save(out / "head_logits.npy", logits)
            head = {
                "path": str(self.head.path),
                "sha256": self.head.sha256,
                "input": self.head.input_name,
                "labels": list(self.head.classes(None)),
            }
        with (out / "dead_letters.jsonl").open("w") as handle:
            for entry in self.dead:
                handle.write(json.dumps(entry, sort_keys=True) + "\n")
        bundle = self.runner.bundle
        summary = {
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "bundle": {
                "manifest_sha256": bundle.digest,
                "model_sha256": bundle.model_sha256,
                "path": str(bundle.path),
                "adapter": self.runner.adapter.name,
            },
            "source": source,
            "direction_head": head,
            "messages": self.seen,
            "scored": len(self.ids),
            "dead_letters": len(self.dead),
            "q_abs_available": bool(self.q_parts),
            "bottom_entries": int(arrays["bottom_mask"].sum()) if "bottom_mask" in arrays else 0,
        }
        (out / "run.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        return summary


def from_file(path: Path, max_messages: int | None = None) -> Iterator[Recorded]:
    """One feature message a line (blank lines skipped); the line number is the offset."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle):
            if max_messages is not None and number >= max_messages:
                return
            stripped = line.strip()
            if stripped:
                yield Recorded(stripped, str(path), -1, number)


def progress(records: Iterable[Recorded], every_s: float = 1.0) -> Iterator[Recorded]:
    """A progress line on stderr for long replays (only when stderr is a terminal)."""
    if not sys.stderr.isatty():
        yield from records
        return
    started = last = time.monotonic()
    count = 0
    for record in records:
        count += 1
        now = time.monotonic()
        if now - last >= every_s:
            last = now
            print(
                f"\rreplayed {count:,} messages ({count / (now - started):,.0f}/s)",
                end="",
                file=sys.stderr,
                flush=True,
            )
        yield record
    print(f"\rreplayed {count:,} messages{' ' * 20}", file=sys.stderr)
