"""Find the messages a model refuses by bisecting the batch (pure: the model call is passed in).

A batch that ONNX Runtime refuses (for example a shape it rejects at run time) is split in
halves, recursively, until every refused message stands alone; k bad messages among n cost
O(k log n) runs instead of n. The good halves keep the result of their own run: the runner
pads odd batches, so a sample's answer is the same bits whatever batch it lands in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from worker.errors import PoisonInputError

T = TypeVar("T")


@dataclass
class Isolated(Generic[T]):
    """What a batch turned into: runs that succeeded, and rows refused on their own."""

    ran: list[tuple[list[int], T]] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)
    runs: int = 0


def isolate_refusals(rows: Sequence[int], run: Callable[[list[int]], T]) -> Isolated[T]:
    """Run ``rows`` as one batch; on a PoisonInputError, bisect until the refused rows are alone.

    ``run`` receives a non-empty, order-preserving slice of ``rows``. Exceptions other than
    PoisonInputError (a broken bundle, a bug) propagate: they are not about one message.
    """
    out: Isolated[T] = Isolated()
    pending = [list(rows)] if rows else []
    while pending:
        chunk = pending.pop()
        out.runs += 1
        try:
            out.ran.append((chunk, run(chunk)))
        except PoisonInputError as exc:
            if len(chunk) == 1:
                out.refused.append((chunk[0], str(exc)))
            else:
                middle = len(chunk) // 2
                # Pushed right first so the left half runs first: outputs keep input order.
                pending.extend((chunk[middle:], chunk[:middle]))
    out.ran.sort(key=lambda item: item[0][0])
    return out
