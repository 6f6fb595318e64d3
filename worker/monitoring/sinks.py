"""Event sinks: a rotating JSONL file and a Kafka events topic. Sinks never raise into the loop.

The file sink writes on its own thread behind a bounded queue: a slow disk never blocks the
consume loop; when the queue is full the event is dropped, counted and logged (rate-limited),
rather than stalling the worker.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import orjson
import structlog

from worker.monitoring.zpml import jsonl_line

log = structlog.get_logger("worker.monitoring")

Event = dict[str, Any]


class Sink(Protocol):
    """Receives monitor events; must not raise and must not block for long."""

    def emit(self, event: Event) -> None:
        """Take one event."""
        ...

    def close(self) -> None:
        """Flush and release resources."""
        ...


class JsonlSink:
    """zeroproofml's JSONL conventions (sorted keys, NaN as null), rotated by size."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = 64 * 1024 * 1024,
        backups: int = 5,
        queue_size: int = 10_000,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.dropped = 0
        self._last_drop_log = 0.0
        # Events, not lines: the writer thread formats them (stdlib json, for zeroproofml's
        # exact layout), mostly while the loop waits for the broker, not on its hot path.
        self._queue: queue.Queue[Event | None] = queue.Queue(maxsize=queue_size)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="jsonl-sink", daemon=True)
        self._thread.start()

    def emit(self, event: Event) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1
            now = time.monotonic()
            if now - self._last_drop_log > 10:
                self._last_drop_log = now
                log.warning("monitor.events_dropped", sink="jsonl", dropped=self.dropped)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        handle = self.path.open("a", encoding="ascii")
        try:
            while True:
                event = self._queue.get()
                if event is None:
                    return
                try:
                    handle.write(jsonl_line(event))
                    if self._queue.empty():
                        handle.flush()
                    if handle.tell() >= self.max_bytes:
                        handle.close()
                        self._rotate()
                        handle = self.path.open("a", encoding="ascii")
                except (OSError, TypeError, ValueError) as exc:
                    self.dropped += 1
                    log.warning("monitor.sink_error", sink="jsonl", reason=str(exc))
        finally:
            handle.close()

    def _rotate(self) -> None:
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))


class KafkaEventSink:
    """The same events on a Kafka topic, keyed by scope (or event name), for ops to tail."""

    def __init__(self, producer: Any, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self.dropped = 0

    def emit(self, event: Event) -> None:
        key = str(event.get("scope") or event.get("event", "event")).encode()
        try:
            self.producer.produce(self.topic, orjson.dumps(event), key)
            # Serve delivery reports: an unpolled producer keeps every delivered event queued
            # until queue.buffering.max.messages is reached, then refuses (and we drop) all.
            self.producer.poll(0)
        except (BufferError, TypeError, ValueError) as exc:
            self.dropped += 1
            log.warning("monitor.events_dropped", sink="kafka", reason=str(exc))

    def close(self) -> None:
        remaining = self.producer.flush(5)
        if remaining:
            self.dropped += remaining
            log.warning("monitor.events_dropped", sink="kafka", dropped=remaining)


class FanOut:
    """Several sinks behind one; a failing sink cannot hurt the others or the loop."""

    def __init__(self, sinks: list[Sink]) -> None:
        self.sinks = sinks

    def emit(self, event: Event) -> None:
        for sink in self.sinks:
            try:
                sink.emit(event)
            except Exception as exc:  # a sink must never take the worker down
                log.warning("monitor.sink_error", sink=type(sink).__name__, reason=str(exc))

    def close(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # closing is best effort at shutdown
                log.warning("monitor.sink_error", sink=type(sink).__name__, reason=str(exc))
