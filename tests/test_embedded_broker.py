"""The embedded broker's lifecycle: one process per broker, gone after stop."""

from __future__ import annotations

from worker.kafka.embedded import EmbeddedBroker, wait_for_metadata


def test_starting_twice_keeps_one_process_and_stop_ends_it() -> None:
    with EmbeddedBroker().start() as broker:  # __enter__ starts it a second time
        first = broker.process
        assert first is not None
        assert broker.start().process is first
        wait_for_metadata(broker.bootstrap_servers)
    assert first.poll() is not None
