"""Calibrator maths and fitting: the spec's numbers, its grid search, PAV like scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.calibration.calibrators import Identity, Isotonic, Temperature, calibrate, softmax
from worker.calibration.fit import (
    Eligibility,
    device_report,
    fit_isotonic,
    fit_temperature,
    fit_temperature_probabilities,
    nll,
    pav,
)
from worker.calibration.tune import choose, reliability, sweep


class TestTemperature:
    """Section 2.2 and the golden numbers of section 14.8."""

    def test_golden_single_row(self) -> None:
        """T = 2 on [0.7, 0.2, 0.1] gives [0.52288, 0.27949, 0.19763]."""
        out = Temperature(2.0).apply(np.array([0.7, 0.2, 0.1]))
        assert out.shape == (3,)
        np.testing.assert_allclose(out, [0.52288, 0.27949, 0.19763], atol=5e-6)

    def test_batch_equals_rows(self) -> None:
        """A (N, K) batch gives exactly the single-row answers, row by row."""
        rows = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [1.0, 0.0, 0.0]])
        batch = Temperature(1.7).apply(rows)
        assert batch.shape == rows.shape
        for i, row in enumerate(rows):
            assert np.array_equal(batch[i], Temperature(1.7).apply(row))
        np.testing.assert_allclose(batch.sum(axis=1), 1.0, rtol=1e-15)

    def test_probability_floor(self) -> None:
        """p = [1, 0, 0] at T = 2: the zeros are floored at 1e-12, so 1e-6 each."""
        out = Temperature(2.0).apply(np.array([1.0, 0.0, 0.0]))
        np.testing.assert_allclose(out, [0.999998, 1e-6, 1e-6], rtol=1e-5)

    def test_floor_vs_logit_route(self) -> None:
        """Logits [40, 0, 0] at T = 3: ~1.0e-4 by the probability route, ~1.6e-6 by logits."""
        logits = np.array([[40.0, 0.0, 0.0]])
        by_probability = calibrate(Temperature(3.0), logits)
        by_logits = calibrate(Temperature(3.0, "logits"), logits)
        assert by_probability[0, 1] == pytest.approx(1.0e-4, rel=1e-3)
        assert by_logits[0, 1] == pytest.approx(np.exp(-40 / 3) / (1 + 2 * np.exp(-40 / 3)))
        assert by_logits[0, 1] == pytest.approx(1.6e-6, rel=0.02)

    def test_t_one_is_identity(self) -> None:
        """T == 1 exactly returns the very same object, not even renormalised."""
        p = np.array([0.5, 0.4, 0.3])
        assert Temperature(1.0).apply(p) is p
        assert Identity().apply(p) is p

    def test_argmax_kept_and_flattening(self) -> None:
        """Temperature never moves the argmax; T > 1 lowers the max probability."""
        rng = np.random.default_rng(1)
        p = softmax(rng.normal(size=(200, 3)) * 3)
        for t in (0.3, 2.5):
            out = Temperature(t).apply(p)
            assert np.array_equal(out.argmax(axis=1), p.argmax(axis=1))
        assert (Temperature(2.5).apply(p).max(axis=1) <= p.max(axis=1) + 1e-12).all()

    @pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), "2", True])
    def test_bad_temperature_refused(self, bad: object) -> None:
        """Non-positive, NaN, infinite and non-numbers are refused (taskclf lets NaN through)."""
        with pytest.raises(ValueError, match="temperature"):
            Temperature(bad)  # type: ignore[arg-type]

    def test_integer_input_is_not_truncated(self) -> None:
        """An integer array is read as float64 (taskclf would truncate)."""
        out = Temperature(2.0).apply(np.array([1, 0, 0]))
        assert out.dtype == np.float64 and out[1] == pytest.approx(1e-6, rel=1e-5)


class TestIsotonic:
    """Section 2.3: clamp, interpolate, floor, renormalise."""

    KNOTS = (((0.2, 0.6), (0.1, 0.9)), ((0.0, 1.0), (0.0, 0.5)))

    def test_hand_computed(self) -> None:
        """[0.4, 0.6] -> class 0: interp 0.5 ; class 1: 0.3 ; renormalised [0.625, 0.375]."""
        out = Isotonic(self.KNOTS).apply(np.array([0.4, 0.6]))
        np.testing.assert_allclose(out, [0.625, 0.375])

    def test_clamped_to_knot_range(self) -> None:
        """Below the first knot reads the first y; above the last reads the last y."""
        out = Isotonic(self.KNOTS).apply(np.array([[0.05, 0.95], [0.9, 0.1]]))
        np.testing.assert_allclose(out[0], np.array([0.1, 0.475]) / 0.575)
        np.testing.assert_allclose(out[1], np.array([0.9, 0.05]) / 0.95)

    def test_all_zero_map_is_uniform(self) -> None:
        """Every class mapping to 0 floors at 1e-12 and renormalises to uniform."""
        zero = ((0.0, 1.0), (0.0, 0.0))
        out = Isotonic((zero, zero, zero)).apply(np.array([0.2, 0.3, 0.5]))
        np.testing.assert_allclose(out, [1 / 3] * 3)

    def test_class_count_checked(self) -> None:
        """A width other than the knot lists is an error, never garbage columns."""
        with pytest.raises(ValueError, match="expected 2 classes"):
            Isotonic(self.KNOTS).apply(np.array([0.2, 0.3, 0.5]))

    def test_nan_row_stays_nan(self) -> None:
        """A NaN input row comes out NaN (the gate then refuses it); other rows unaffected."""
        out = Isotonic(self.KNOTS).apply(np.array([[np.nan, 0.5], [0.4, 0.6]]))
        assert np.isnan(out[0]).all()
        np.testing.assert_allclose(out[1], [0.625, 0.375])

    @pytest.mark.parametrize(
        "knots",
        [
            (((0.5, 0.2), (0.1, 0.9)),),
            (((0.2, 0.5), (0.9, 0.1)),),
            (((0.2, 0.5), (0.1, 1.5)),),
            (((0.2, float("nan")), (0.1, 0.2)),),
            (((0.2,), (0.1, 0.2)),),
        ],
    )
    def test_bad_knots_refused(self, knots: tuple) -> None:  # type: ignore[type-arg]
        """x not ascending, y decreasing or outside [0, 1], NaN, length mismatch: refused."""
        with pytest.raises(ValueError, match="knots"):
            Isotonic(knots)


def spec_grid(p: np.ndarray, y: np.ndarray) -> float:
    """The spec's section 5.2 search, written independently (vectorised, np.arange grids)."""

    def objective(t: float) -> float:
        if t == 1.0:
            q = p
        else:
            s = np.log(np.maximum(p, 1e-12)) / t
            s = s - s.max(axis=1, keepdims=True)
            q = np.exp(s) / np.exp(s).sum(axis=1, keepdims=True)
        return float(-np.mean(np.log(np.maximum(q[np.arange(len(y)), y], 1e-12))))

    best, best_value = 1.0, objective(1.0)
    for t in np.round(np.arange(0.1, 5.0 + 1e-9, 0.1), 10):
        if (v := objective(float(t))) < best_value:
            best, best_value = float(t), v
    for t in np.round(np.arange(max(0.01, best - 0.1), best + 0.1 + 1e-9, 0.01), 10):
        if (v := objective(float(t))) < best_value:
            best, best_value = float(t), v
    return round(best, 4)


class TestFitTemperature:
    """Where the spec's grid search lands."""

    @pytest.mark.parametrize(("true_t", "seed"), [(0.5, 3), (1.0, 4), (2.0, 5), (3.3, 6)])
    def test_recovers_the_generating_temperature(self, true_t: float, seed: int) -> None:
        """Labels drawn from softmax(z / T*): the fit equals the spec grid and is near T*."""
        rng = np.random.default_rng(seed)
        z = rng.normal(size=(4000, 3)) * 3
        truth = softmax(z / true_t)
        y = np.array([rng.choice(3, p=row) for row in truth])
        fitted = fit_temperature(z, y)
        assert fitted.temperature == spec_grid(softmax(z), y)
        assert fitted.temperature == pytest.approx(true_t, rel=0.12)

    def test_golden(self) -> None:
        """Pinned on a fixed data set: the value the spec's search returns, 4 decimals."""
        rng = np.random.default_rng(42)
        z = rng.normal(size=(500, 2)) * 4
        y = (rng.random(500) < softmax(z / 2.5)[:, 1]).astype(int)
        fitted = fit_temperature(z, y).temperature
        assert fitted == spec_grid(softmax(z), y)
        assert fitted == round(fitted, 2) and 1.5 < fitted < 4.0
        assert nll(calibrate(Temperature(fitted), z), y) < nll(softmax(z), y)

    def test_on_probabilities_and_logit_route(self) -> None:
        """Probabilities in (the spec's own signature); the logit route lands near the same T."""
        rng = np.random.default_rng(11)
        z = rng.normal(size=(3000, 3)) * 2
        y = np.array([rng.choice(3, p=row) for row in softmax(z / 1.8)])
        on_p = fit_temperature_probabilities(softmax(z), y)
        assert on_p.temperature == spec_grid(softmax(z), y) == fit_temperature(z, y).temperature
        by_logits = fit_temperature(z, y, "logits")
        assert by_logits.route == "logits"
        assert by_logits.temperature == pytest.approx(on_p.temperature, abs=0.02)

    def test_labels_out_of_range_refused(self) -> None:
        """A label column the head does not have is an error, not an IndexError."""
        with pytest.raises(ValueError, match="column indices"):
            fit_temperature(np.zeros((3, 2)), np.array([0, 1, 2]))

    def test_ties_keep_one(self) -> None:
        """Uninformative logits: every T has the same NLL, the strict rule keeps 1.0."""
        z = np.zeros((10, 2))
        assert fit_temperature(z, np.array([0, 1] * 5)).temperature == 1.0


class TestPav:
    """Isotonic fit: monotone, mean-preserving, knots at the ends of flat runs."""

    def test_known_case(self) -> None:
        """y = [1, 0, 1, 1] at increasing x: first two pool to 0.5."""
        x, y = pav([0.1, 0.2, 0.3, 0.4], [1, 0, 1, 1])
        assert x == (0.1, 0.2, 0.3, 0.4)
        assert y == (0.5, 0.5, 1.0, 1.0)

    def test_flat_runs_keep_ends(self) -> None:
        """A run of equal values keeps only its first and last point."""
        x, y = pav([0.1, 0.2, 0.3, 0.4, 0.5], [0, 0, 0, 0, 1])
        assert x == (0.1, 0.4, 0.5) and y == (0.0, 0.0, 1.0)

    @settings(max_examples=60, deadline=None)
    @given(
        st.lists(
            st.tuples(st.floats(0, 1, allow_nan=False), st.integers(0, 1)),
            min_size=1,
            max_size=60,
        )
    )
    def test_properties(self, points: list[tuple[float, int]]) -> None:
        """Non-decreasing, in [0, 1], and the fitted values keep the mean of y."""
        xs = np.array([p[0] for p in points])
        ys = np.array([p[1] for p in points], dtype=float)
        kx, ky = pav(xs, ys)
        assert all(np.diff(kx) > 0) and all(np.diff(ky) >= 0)
        fitted = np.interp(xs, kx, ky)
        assert min(ky) >= 0 and max(ky) <= 1
        assert fitted.mean() == pytest.approx(ys.mean(), abs=1e-9)

    def test_fit_isotonic_improves_calibration(self) -> None:
        """On overconfident scores the isotonic map lowers the calibration error."""
        rng = np.random.default_rng(7)
        z = rng.normal(size=(3000, 2)) * 5
        y = (rng.random(3000) < softmax(z / 3)[:, 1]).astype(int)
        iso = fit_isotonic(z, y)
        before = reliability(softmax(z), y).ece
        after = reliability(calibrate(iso, z), y).ece
        assert after < before / 2


class TestEligibility:
    """200 samples, 3 days, min(3, K) distinct labels, all compared with >=."""

    DAY = 86_400.0

    def test_binary_head_can_qualify(self) -> None:
        """With the cap, a binary head's device qualifies on 2 distinct labels."""
        rules = Eligibility().capped(2)
        stamps = [i * self.DAY for i in range(3)] * 67
        report = device_report("arm-1", [0, 1] * 100 + [0], stamps[:201], rules)
        assert report.eligible and report.days == 3 and report.distinct_labels == 2
        assert not device_report("arm-1", [0, 1] * 100, stamps[:200], Eligibility()).eligible

    def test_each_threshold(self) -> None:
        """One short on samples, on days or on labels: not eligible."""
        rules = Eligibility(min_samples=4, min_days=2, min_distinct_labels=2)
        ok = device_report("d", [0, 1, 0, 1], [0, 0, self.DAY, self.DAY], rules)
        assert ok.eligible
        assert not device_report("d", [0, 1, 0], [0, 0, self.DAY], rules).eligible
        assert not device_report("d", [0, 1, 0, 1], [0, 0, 0, 0], rules).eligible
        assert not device_report("d", [0, 0, 0, 0], [0, 0, self.DAY, self.DAY], rules).eligible


class TestTuning:
    """The sweep and the choice; no silent default."""

    def test_sweep_and_choice(self) -> None:
        """Highest accepted accuracy inside the band; equality accepts (strict <)."""
        p = np.array([[0.9, 0.1]] * 6 + [[0.6, 0.4]] * 2 + [[0.55, 0.45]] * 2)
        y = np.array([0] * 6 + [0, 1] + [1, 1])
        rows = sweep(p, y, grid=[0.5, 0.55, 0.6, 0.9])
        by_t = {r.threshold: r for r in rows}
        assert by_t[0.55].reject_rate == 0.0
        assert by_t[0.6].reject_rate == 0.2 and by_t[0.6].accuracy_on_accepted == 0.875
        assert by_t[0.9].reject_rate == 0.4
        assert choose(rows, (0.05, 0.30)) == by_t[0.6]

    def test_none_qualifies(self) -> None:
        """No candidate inside the band: None, never 0.55."""
        p = np.array([[0.99, 0.01]] * 10)
        rows = sweep(p, np.zeros(10, dtype=int))
        assert choose(rows) is None

    def test_nan_never_accepted(self) -> None:
        """A NaN row counts as rejected at every threshold, even 0."""
        p = np.array([[np.nan, np.nan], [0.8, 0.2]])
        assert sweep(p, np.array([0, 0]), grid=[0.0])[0].reject_rate == 0.5
