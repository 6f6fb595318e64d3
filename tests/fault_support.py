"""Fault injection for the reliability suite: a loopback TCP proxy, brokers behind it, a report.

The proxy sits between every client and a Tansu broker whose advertised listener is the
proxy's port, so that clients keep talking through the proxy after bootstrap (a broker hands
out its advertised address in metadata). Modes:

* ``pass``: bytes flow both ways.
* ``refuse``: the listener is closed and every open connection reset: connections refused.
* ``blackhole``: connections are accepted and kept, but nothing is forwarded either way until
  the cut ends (then the queued bytes flow, as TCP retransmits after a partition heals).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.kafka_support import independent_reader
from worker.kafka.embedded import broker_binary, free_port, wait_for_metadata

SOAK = os.environ.get("SCM_WORKER_SOAK") == "1"
REPORT = os.environ.get("SCM_WORKER_REPORT")  # path stem: writes <stem>.json and <stem>.md


class TcpProxy:
    """A threaded loopback proxy with pass / refuse / blackhole modes."""

    def __init__(self, upstream_port: int, port: int = 0) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.port = port or free_port()
        self.mode = "pass"
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._closed = False
        self.connections = 0

    def start(self) -> TcpProxy:
        self._listen()
        return self

    def set_mode(self, mode: str) -> None:
        """Switch to ``pass``, ``refuse`` or ``blackhole``."""
        assert mode in ("pass", "refuse", "blackhole"), mode
        with self._lock:
            previous, self.mode = self.mode, mode
        if mode == "refuse":
            self._close_listener()
            self._reset_all()
        elif previous == "refuse":
            self._listen()

    def close(self) -> None:
        self._closed = True
        self._close_listener()
        self._reset_all()

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    def _reset_all(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    # SO_LINGER 0: an RST, like a broker host that went away.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                    sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
                self.connections += 1
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        try:
            while not self._closed:
                if self.mode == "blackhole":
                    time.sleep(0.05)  # hold the bytes: nothing moves until the cut ends
                    continue
                readable, _, _ = select.select(list(peers), [], [], 0.1)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for sock in peers:
                with contextlib.suppress(OSError):
                    sock.close()


@dataclass
class ProxiedBroker:
    """A Tansu broker reachable only through a TcpProxy (its advertised address)."""

    log_path: Path | None = None
    schema_dir: Path | None = None
    proxy: TcpProxy = field(init=False)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.proxy.port}"

    def __enter__(self) -> ProxiedBroker:
        broker_port = free_port()
        self.proxy = TcpProxy(broker_port).start()
        command = [
            broker_binary(),
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{broker_port}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{self.proxy.port}",
            "--storage-engine",
            "memory://tansu/",
        ]
        cwd = None
        if self.schema_dir is not None:
            # Tansu reads file:// URLs relative to its working directory.
            command += ["--schema-registry", f"file://./{self.schema_dir.name}"]
            cwd = self.schema_dir.parent
        with contextlib.ExitStack() as stack:
            out: Any = subprocess.DEVNULL
            if self.log_path is not None:
                out = stack.enter_context(self.log_path.open("ab"))
            self.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                start_new_session=True,
                env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
            )
        wait_for_metadata(self.bootstrap_servers)
        return self

    def __exit__(self, *_: object) -> None:
        self.proxy.close()
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def http_get(port: int, path: str) -> tuple[int, str]:
    """Status and body of a probe or /metrics, without raising on 503."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, OSError):
        return 0, ""  # not listening yet


def metric_value(text: str, name: str) -> float:
    """The sum of every sample of ``name`` in a Prometheus text exposition (0 if absent)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            head = line.split(" ")[0]
            if head == name or head.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
    return total


def wait_until(predicate: Any, timeout_s: float, what: str, every_s: float = 0.2) -> None:
    """Poll ``predicate`` until true; fail naming ``what`` was awaited."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(every_s)


_FIGURES: list[dict[str, Any]] = []


def record(scenario: str, **figures: Any) -> None:
    """Keep one scenario's figures for the report (written at the end of the session)."""
    _FIGURES.append({"scenario": scenario, "soak": SOAK, **figures})


def write_report() -> None:
    """``<stem>.json`` and ``<stem>.md`` with every scenario's figures, when asked for."""
    if not REPORT or not _FIGURES:
        return
    stem = Path(REPORT)
    stem.with_suffix(".json").write_text(json.dumps(_FIGURES, indent=2) + "\n")
    stem.with_suffix(".md").write_text(render_report(_FIGURES))


def render_report(figures: list[dict[str, Any]]) -> str:
    """The figures as Markdown, one section per scenario, in the order they were recorded."""
    mode = "soak" if any(entry.get("soak") for entry in figures) else "short"
    lines = [
        "# scm-worker reliability report",
        "",
        f"Generated by `make soak` ({mode} mode), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
    ]
    for entry in figures:
        lines += [f"## {entry['scenario']}", ""]
        lines += [f"- {k}: {v}" for k, v in entry.items() if k not in ("scenario", "soak")]
        lines.append("")
    return "\n".join(lines)


def read_covering(
    bootstrap: str, topic: str, wanted: set[Any], key: Any, timeout_s: float = 120.0
) -> list[Any]:
    """Read a topic from the start until ``key(message)`` covers ``wanted`` (duplicates kept).

    Counting records is not enough once duplicates exist: it would stop before the last
    distinct message arrived.
    """
    consumer = independent_reader(bootstrap, topic, "cover")
    records: list[Any] = []
    seen: set[Any] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while not wanted <= seen and time.monotonic() < deadline:
            for message in consumer.consume(5000, 0.5):
                if message.error() is None:
                    records.append(message)
                    seen.add(key(message))
        records.extend(m for m in consumer.consume(5000, 1.0) if m.error() is None)
    finally:
        consumer.close()
    return records


def message_id(message: Any) -> str:
    """The message_id of a result record."""
    return str(json.loads(message.value())["message_id"])


def read_to_end(
    bootstrap: str, topic: str, quiet_s: float = 3.0, timeout_s: float = 120.0
) -> list[Any]:
    """Everything in a topic: read from the start until nothing arrives for ``quiet_s``."""
    consumer = independent_reader(bootstrap, topic, "end")
    records: list[Any] = []
    started = last = time.monotonic()
    try:
        # The group join takes seconds: quiet time counts once the first record arrived.
        while time.monotonic() - started < timeout_s:
            batch = [m for m in consumer.consume(5000, 0.5) if m.error() is None]
            records += batch
            now = time.monotonic()
            last = now if batch else last
            if (records and now - last > quiet_s) or (not records and now - started > 30):
                break
    finally:
        consumer.close()
    return records


def produce_many(
    bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None]]
) -> None:
    """Like kafka_support.produce, for any number of records (serves a full queue)."""
    from confluent_kafka import Producer

    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20}
    )
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(120) == 0, "test records not acknowledged"
