"""Per-sample routing: accept, solver or reject, from the masks and the policy (pure)."""

from __future__ import annotations

from typing import cast

import numpy as np

from worker.config import RoutingPolicy
from worker.inference.result import StrictResult

ACCEPT, SOLVER, REJECT = "accept", "solver", "reject"


def route_samples(result: StrictResult, policy: RoutingPolicy) -> list[str]:
    """One route per sample.

    A bottom sample with fault entries and no semantic ones (or whose provenance is
    unavailable) follows ``on_fault``; one with both follows ``on_mixed`` (default: the fault
    action); semantic-only bottoms follow ``on_bottom``; an accepted sample with any gap entry
    follows ``on_gap``; everything else is accepted.
    """
    if result.batch_size == 0:
        return []
    bottom = result.per_sample("bottom_mask")
    fault = result.per_sample("fault_mask") & bottom
    semantic = result.per_sample("semantic_bottom_mask") & bottom
    if not result.provenance_available:
        fault, semantic = bottom, np.zeros_like(bottom)
    gap = result.per_sample("gap_mask") & ~bottom
    # Each sample's route as an index into these, later rules winning: the routes are then
    # these very strings, picked from C, rather than a string built per sample by tolist().
    names: list[str] = [
        ACCEPT,
        policy.on_gap,
        policy.on_bottom,
        policy.fault_action,
        policy.mixed_action,
    ]
    choice = np.zeros(bottom.shape, dtype=np.intp)
    choice[gap] = 1
    choice[bottom] = 2
    choice[fault] = 3
    choice[fault & semantic] = 4
    picks = cast(list[int], choice.tolist())
    return list(map(names.__getitem__, picks))
