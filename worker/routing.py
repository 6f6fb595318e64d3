"""Per-sample routing: accept, solver or reject, from the masks and the policy (pure)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

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
    routes: npt.NDArray[np.str_] = np.full(bottom.shape, ACCEPT, dtype="<U6")
    routes[gap] = policy.on_gap
    routes[bottom] = policy.on_bottom
    routes[fault] = policy.fault_action
    routes[fault & semantic] = policy.mixed_action
    out: list[str] = routes.tolist()
    return out
