"""Which input offsets may be committed: only those whose every output the broker acknowledged.

Pure bookkeeping, no Kafka. Per partition, messages are tracked in consumption order; the
commit position advances over the contiguous prefix whose outputs are all acknowledged, so a
slow or failed output holds back its partition and nothing behind it is marked done.

The unit is a run of consecutive messages of one partition (the loop registers each
micro-batch's share of a partition as one entry): it is done when every output of every
message in it is acknowledged. Coarser entries never commit earlier than per-message ones
would; they cost one entry and one counter per partition and batch instead of per message.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Partition = tuple[str, int]


@dataclass(slots=True)
class Pending:
    """Consecutive input messages of one partition waiting for their outputs' acknowledgements.

    ``offset`` is the last message's offset; ``messages`` how many the entry covers.
    ``tracker`` is the tracker it belongs to (``OffsetTracker.add`` sets it), ``failed`` what
    ``delivered`` hands a failed delivery report to.
    """

    partition: Partition
    offset: int
    remaining: int
    messages: int = 1
    tracker: OffsetTracker | None = field(default=None, repr=False, compare=False)
    failed: Callable[[Pending, Any, Any], None] | None = field(
        default=None, repr=False, compare=False
    )

    def delivered(self, err: Any, message: Any) -> None:
        """A delivery callback (``err``, ``message``) for any output of this entry.

        A bound method handed to the client as is: one Python frame per acknowledged record,
        where a partial of a worker method calling ``tracker.ack`` took two.
        """
        if err is None:
            self.remaining -= 1
            if self.remaining == 0 and self.tracker is not None:
                self.tracker._in_flight -= self.messages
            return
        if self.failed is None:
            raise RuntimeError(f"delivery failed with no failure handler: {err}")
        self.failed(self, err, message)


@dataclass
class OffsetTracker:
    """Tracks in-flight messages and yields safe commit positions (offset of next message)."""

    _queues: dict[Partition, deque[Pending]] = field(default_factory=dict)
    _in_flight: int = 0

    @property
    def in_flight(self) -> int:
        """Messages consumed whose outputs are not all acknowledged yet."""
        return self._in_flight

    def add(
        self,
        partition: Partition,
        offset: int,
        outputs: int,
        messages: int = 1,
        failed: Callable[[Pending, Any, Any], None] | None = None,
    ) -> Pending:
        """Register ``messages`` consumed messages ending at ``offset`` and their ``outputs``.

        The messages must directly follow the partition's previous entry in consumption order.
        ``failed`` receives the entry's failed delivery reports (see ``Pending.delivered``).
        """
        if outputs < messages or messages < 1:
            raise ValueError("every input message produces at least one output")
        pending = Pending(partition, offset, outputs, messages, self, failed)
        self._queues.setdefault(partition, deque()).append(pending)
        self._in_flight += messages
        return pending

    def ack(self, pending: Pending) -> None:
        """One output of ``pending`` was acknowledged by the broker."""
        pending.remaining -= 1
        if pending.remaining == 0 and pending.tracker is self:
            self._in_flight -= pending.messages

    def ready(self) -> dict[Partition, int]:
        """Pop the done prefix of each partition; return the next offset to commit."""
        positions: dict[Partition, int] = {}
        for partition, queue in self._queues.items():
            while queue and queue[0].remaining == 0:
                positions[partition] = queue.popleft().offset + 1
        return positions

    def forget(self, partitions: set[Partition]) -> int:
        """Drop revoked partitions; their unfinished messages will be redelivered elsewhere."""
        dropped = 0
        for partition in partitions:
            queue = self._queues.pop(partition, deque())
            for pending in queue:
                # A late acknowledgement of a forgotten entry must not count it out twice.
                pending.tracker = None
            unfinished = sum(p.messages for p in queue if p.remaining)
            self._in_flight -= unfinished
            dropped += unfinished
        return dropped
