"""The decode rules against a plain, entry-by-entry reading of contract section 6.

The reference below is deliberately naive: Python loops over NumPy scalars of the
denominator's dtype, written straight from the spec's numbered steps. The vectorized
implementation must agree with it on every generated case, bit for bit.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.conftest import same_array
from worker.inference.decode import ThresholdError, dtype_threshold, strict_decode


def reference_decode(
    p: np.ndarray, q: np.ndarray, tau_infer: float, tau_train: float | None
) -> dict[str, np.ndarray]:
    """Contract §6.2, one mask entry at a time."""
    kind = q.dtype.type
    t_inf = kind(tau_infer)
    gap_on = tau_train is not None and tau_train > tau_infer
    t_train = kind(tau_train) if gap_on else None
    shared = p.ndim > q.ndim
    decoded = np.empty_like(p)
    out = {
        name: np.zeros(q.shape, dtype=bool)
        for name in ("bottom_mask", "gap_mask", "fault_mask", "semantic_bottom_mask")
    }
    codes = np.zeros(q.shape, dtype=np.int64)
    for idx in itertools.product(*(range(n) for n in q.shape)):
        comps = p[idx].reshape(-1) if shared else np.asarray([p[idx]])
        qq = q[idx]
        fault0 = any(not np.isfinite(c) for c in comps) or not np.isfinite(qq)
        semantic = bool(qq == 0) or bool(abs(qq) < t_inf)
        bottom0 = fault0 or semantic
        divisor = kind(1) if bottom0 else qq
        with np.errstate(all="ignore"):
            quotients = [c / divisor for c in comps]
        fault = fault0 or any(not np.isfinite(x) for x in quotients)
        bottom = fault or semantic
        values = [kind(np.nan) if bottom else x for x in quotients]
        if shared:
            decoded[idx] = np.asarray(values, dtype=p.dtype).reshape(p[idx].shape)
        else:
            decoded[idx] = values[0]
        gap = gap_on and bool(abs(qq) >= t_inf) and bool(abs(qq) < t_train) and not bottom
        out["bottom_mask"][idx] = bottom
        out["gap_mask"][idx] = gap
        out["fault_mask"][idx] = fault
        out["semantic_bottom_mask"][idx] = semantic
        codes[idx] = (1 if fault else 0) + (2 if semantic else 0)
    return {"decoded": decoded, **out, "bottom_provenance": codes}


def _specials(dtype: type[np.floating], tau: float, tau_train: float | None) -> list[float]:
    t = dtype(tau)
    values = [
        0.0,
        -0.0,
        np.nan,
        np.inf,
        -np.inf,
        1.0,
        -1.0,
        float(np.finfo(dtype).max),
        float(np.finfo(dtype).smallest_subnormal),
        float(np.finfo(dtype).tiny),
        float(t),
        -float(t),
        float(np.nextafter(t, dtype(0))),
        float(np.nextafter(t, dtype(np.inf))),
    ]
    if tau_train is not None:
        tt = dtype(tau_train)
        values += [float(tt), float(np.nextafter(tt, dtype(0))), -float(tt)]
    return values


@st.composite
def cases(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, float, float | None]:
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    tau = draw(st.floats(min_value=1e-30, max_value=1e3, allow_nan=False))
    tau_train = draw(
        st.one_of(
            st.none(), st.just(tau), st.floats(min_value=1.0, max_value=1e4).map(lambda m: tau * m)
        )
    )
    width = 32 if dtype is np.float32 else 64
    element = st.one_of(
        st.floats(width=width, allow_nan=True, allow_infinity=True, allow_subnormal=True),
        st.sampled_from(_specials(dtype, tau, tau_train)),
    )
    batch = draw(st.integers(0, 6))
    k = draw(st.integers(1, 3))
    shared = draw(st.booleans())
    p = draw(hnp.arrays(dtype, (batch, k), elements=element))
    q = draw(hnp.arrays(dtype, (batch,) if shared else (batch, k), elements=element))
    return p, q, tau, tau_train


class TestDecodeRules:
    """strict_decode agrees with the naive reference of §6.2 on generated cases."""

    @settings(max_examples=400, deadline=None)
    @given(cases())
    def test_matches_reference(
        self, case: tuple[np.ndarray, np.ndarray, float, float | None]
    ) -> None:
        """Every field, bit for bit, including dtype-rounded thresholds and shared Q."""
        p, q, tau, tau_train = case
        expected = reference_decode(p, q, tau, tau_train)
        ours = strict_decode(p, q, tau, tau_train).fields()
        for name, value in expected.items():
            assert same_array(ours[name], value), name

    @settings(max_examples=200, deadline=None)
    @given(cases())
    def test_invariants(self, case: tuple[np.ndarray, np.ndarray, float, float | None]) -> None:
        """Bottom is fault or semantic; gap never overlaps bottom; a bottom is never a number."""
        p, q, tau, tau_train = case
        r = strict_decode(p, q, tau, tau_train)
        assert np.array_equal(r.bottom_mask, r.fault_mask | r.semantic_bottom_mask)
        assert np.array_equal(r.bottom_mask, r.bottom_provenance != 0)
        assert not (r.gap_mask & r.bottom_mask).any()
        bottom = r.bottom_mask.reshape(r.bottom_mask.shape + (1,) * (p.ndim - q.ndim))
        assert np.isnan(r.decoded[np.broadcast_to(bottom, p.shape)]).all()
        assert np.isfinite(r.decoded[~np.broadcast_to(bottom, p.shape)]).all()


EDGE_TABLE = [
    # P, Q, bottom, gap, fault, semantic, provenance (contract §6.3, float32, 1e-4 / 1e-2)
    (3.0, 2.0, False, False, False, False, 0),
    (1.0, 0.0, True, False, False, True, 2),
    (1.0, -0.0, True, False, False, True, 2),
    (0.0, 0.0, True, False, False, True, 2),
    (1.0, 5e-5, True, False, False, True, 2),
    (1.0, -5e-5, True, False, False, True, 2),
    (1.0, float(np.float32(1e-4)), False, True, False, False, 0),
    (1.0, float(np.nextafter(np.float32(1e-4), np.float32(0))), True, False, False, True, 2),
    (1.0, 5e-3, False, True, False, False, 0),
    (1.0, float(np.float32(1e-2)), False, False, False, False, 0),
    (np.nan, 2.0, True, False, True, False, 1),
    (np.inf, 2.0, True, False, True, False, 1),
    (np.nan, 0.0, True, False, True, True, 3),
    (-np.inf, 5e-5, True, False, True, True, 3),
    (1.0, np.inf, True, False, True, False, 1),
    (1.0, np.nan, True, False, True, False, 1),
    (np.nan, 5e-3, True, False, True, False, 1),
    (3e38, 0.5, True, False, True, False, 1),
    (1e-38, 1e3, False, False, False, False, 0),
    (1.0, 1e-40, True, False, False, True, 2),
    (1.0, 3e38, False, False, False, False, 0),
]


class TestEdgeTable:
    """The edge cases the contract tabulates, one by one."""

    @pytest.mark.parametrize(("p", "q", "bottom", "gap", "fault", "semantic", "code"), EDGE_TABLE)
    def test_entry(
        self, p: float, q: float, bottom: bool, gap: bool, fault: bool, semantic: bool, code: int
    ) -> None:
        """Masks and provenance equal the table's row."""
        r = strict_decode(np.array([[p]], np.float32), np.array([[q]], np.float32), 1e-4, 1e-2)
        got = (
            bool(r.bottom_mask[0, 0]),
            bool(r.gap_mask[0, 0]),
            bool(r.fault_mask[0, 0]),
            bool(r.semantic_bottom_mask[0, 0]),
            int(r.bottom_provenance[0, 0]),
        )
        assert got == (bottom, gap, fault, semantic, code)
        assert np.isnan(r.decoded[0, 0]) == bottom

    def test_float64_boundary_differs_from_float32(self) -> None:
        """float32(1e-4) widened to float64 is below tau 1e-4 in a float64 graph: bottom."""
        q = np.array([[float(np.float32(1e-4))]])
        r = strict_decode(np.ones((1, 1)), q, 1e-4, 1e-2)
        assert r.bottom_mask[0, 0] and r.semantic_bottom_mask[0, 0]

    def test_shared_denominator_spreads_a_bad_component(self) -> None:
        """One non-finite numerator component makes the whole sample bottom and NaN."""
        p = np.array([[1.0, np.inf], [1.0, 2.0]], np.float32)
        q = np.array([2.0, 2.0], np.float32)
        r = strict_decode(p, q, 1e-3, None)
        assert r.bottom_mask.tolist() == [True, False]
        assert np.isnan(r.decoded[0]).all()
        assert r.decoded[1].tolist() == [0.5, 1.0]

    @pytest.mark.parametrize(
        ("tau", "dtype"),
        [(1e-50, np.float32), (1e-8, np.float16), (0.0, np.float32), (float("nan"), np.float64)],
    )
    def test_threshold_that_vanishes_is_refused(self, tau: float, dtype: type) -> None:
        """A tau that rounds to zero (or is not positive) cannot gate: refuse, never guess."""
        with pytest.raises(ThresholdError):
            dtype_threshold(tau, np.dtype(dtype))
