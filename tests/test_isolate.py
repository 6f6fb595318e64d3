"""Bisection of refused batches: which rows are refused, what the good ones get, at what cost."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.bundles import free_width_bundle
from tests.conftest import FIXTURES
from worker.bundle import verify_bundle
from worker.errors import FatalError, InputMismatchError, PoisonInputError
from worker.inference import BundleRunner
from worker.inference.isolate import isolate_refusals


def refusing(bad: set[int], calls: list[list[int]]) -> object:
    def run(rows: list[int]) -> list[int]:
        calls.append(rows)
        if bad & set(rows):
            raise InputMismatchError(f"refused {sorted(bad & set(rows))}")
        return [r * 10 for r in rows]

    return run


class TestIsolateRefusals:
    def test_a_good_batch_runs_once(self) -> None:
        calls: list[list[int]] = []
        out = isolate_refusals([4, 5, 6], refusing(set(), calls))  # type: ignore[arg-type]
        assert out.ran == [([4, 5, 6], [40, 50, 60])] and out.refused == [] and out.runs == 1

    def test_empty(self) -> None:
        out = isolate_refusals([], refusing(set(), []))  # type: ignore[arg-type]
        assert out.ran == [] and out.refused == [] and out.runs == 0

    def test_one_bad_row_in_64_costs_a_logarithmic_number_of_runs(self) -> None:
        calls: list[list[int]] = []
        out = isolate_refusals(list(range(64)), refusing({37}, calls))  # type: ignore[arg-type]
        assert [row for row, _ in out.refused] == [37]
        assert "refused [37]" in out.refused[0][1]
        # One run of the whole batch, then two halves per level: 1 + 2 * log2(64) = 13.
        assert out.runs == len(calls) == 13
        ran_rows = sorted(r for rows, _ in out.ran for r in rows)
        assert ran_rows == [r for r in range(64) if r != 37]
        assert all(result == [r * 10 for r in rows] for rows, result in out.ran)

    def test_other_errors_are_not_about_one_message(self) -> None:
        def broken(rows: list[int]) -> None:
            raise FatalError("the bundle is broken")

        with pytest.raises(FatalError):
            isolate_refusals([1, 2], broken)

    @settings(max_examples=200, deadline=None)
    @given(
        st.integers(1, 300).flatmap(lambda n: st.tuples(st.just(n), st.sets(st.integers(0, n - 1))))
    )
    def test_every_row_ends_once_and_cost_is_k_log_n(self, case: tuple[int, set[int]]) -> None:
        n, bad = case
        calls: list[list[int]] = []
        out = isolate_refusals(list(range(n)), refusing(bad, calls))  # type: ignore[arg-type]
        refused = [row for row, _ in out.refused]
        ran = [r for rows, _ in out.ran for r in rows]
        assert sorted(refused) == sorted(bad)
        assert sorted(ran + refused) == list(range(n))
        assert all(not (bad & set(rows)) for rows, _ in out.ran)
        depth = math.ceil(math.log2(n)) if n > 1 else 0
        assert out.runs <= 1 + 2 * len(bad) * depth


@pytest.fixture(name="free_width_bundle")
def _free_width_bundle(tmp_path: Path) -> Path:
    return free_width_bundle(tmp_path / "bundle")


class TestWithTheRuntime:
    """A real ONNX Runtime failure (a Gemm that rejects a width at run time) is isolated."""

    def test_good_rows_get_the_bits_of_a_normal_run(self, free_width_bundle: Path) -> None:
        runner = BundleRunner(verify_bundle(free_width_bundle))
        rng = np.random.default_rng(0)
        rows = [rng.normal(size=5 if i in (3, 11) else 4).astype(np.float32) for i in range(17)]

        def run(chunk: list[int]) -> object:
            widths = {rows[i].shape for i in chunk}
            if len(widths) != 1:
                raise InputMismatchError("mixed widths")
            return runner.run({"input_0": np.stack([rows[i] for i in chunk])})

        out = isolate_refusals(list(range(17)), run)
        assert sorted(r for r, _ in out.refused) == [3, 11]
        assert all("ONNX Runtime refused" in reason for _, reason in out.refused)
        normal = BundleRunner(
            verify_bundle(FIXTURES / "v061_reference_robotics_seed7" / "bundle")
        ).run({"input_0": np.stack([rows[i] for i in range(17) if i not in (3, 11)])})
        got = {r: res.decoded[j] for rows_, res in out.ran for j, r in enumerate(rows_)}  # type: ignore[attr-defined]
        good = [i for i in range(17) if i not in (3, 11)]
        for k, i in enumerate(good):
            assert got[i].tobytes() == normal.decoded[k].tobytes()

    def test_poison_is_the_runner_error(self) -> None:
        assert issubclass(InputMismatchError, PoisonInputError)
