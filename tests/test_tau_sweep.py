"""The tau sweep reproduces zeroproofml's artifacts; operating points have known answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from worker.cli import main
from worker.tau.sweep import select_operating_point, sweep_json, sweep_markdown, tau_sweep

SWEEP = FIXTURES / "runtime_helpers_example" / "tau_sweep"
INPUTS = json.loads((SWEEP / "inputs.json").read_text())


def test_reproduces_the_reference_files_byte_for_byte() -> None:
    """Same inputs, same provenance: the JSON and the Markdown equal zeroproofml's files."""
    curves = tau_sweep(INPUTS["q_abs"], INPUTS["is_in_range"], INPUTS["taus"])
    assert (
        sweep_json(curves, {"n": 10, "source": "fixture"})
        == (SWEEP / "tau_infer_sweep.json").read_text()
    )
    assert sweep_markdown(curves) == (SWEEP / "tau_infer_sweep.md").read_text()


def test_empty_subset_is_nan_and_refused_as_json() -> None:
    """No censored samples: FP is NaN, and strict JSON refuses it like zeroproofml does."""
    curves = tau_sweep([0.1, 0.2], [True, True], [0.15])
    assert curves["fn_in"] == [0.5]
    with pytest.raises(ValueError, match="Out of range"):
        sweep_json(curves)


CURVES = {
    "taus": [1e-4, 1e-3, 1e-2, 1e-1],
    "fn_in": [0.0, 0.01, 0.05, 0.3],
    "fp_cens": [0.4, 0.1, 0.005, 0.0],
    "bottom_rate": [0.02, 0.06, 0.1, 0.35],
}


@pytest.mark.parametrize(
    ("strategy", "bound", "tau", "acceptance"),
    [
        ("safety", 0.01, 1e-2, 0.9),
        ("safety", 0.1, 1e-3, 0.94),
        ("safety", 0.0, 1e-1, 0.65),
        ("coverage", 0.01, 1e-3, 0.94),
        ("coverage", 0.05, 1e-2, 0.9),
        ("coverage", 0.0, 1e-4, 0.98),
    ],
)
def test_operating_points(strategy: str, bound: float, tau: float, acceptance: float) -> None:
    """Safety-first: smallest tau under the FP bound; coverage-first: largest under the FN bound."""
    point = select_operating_point(CURVES, strategy, bound)  # type: ignore[arg-type]
    assert point.tau_infer == tau
    assert point.expected_acceptance_rate == pytest.approx(acceptance)


def test_unreachable_bound_is_an_error() -> None:
    """When no tau meets the bound the answer is an error, never a silent pick."""
    with pytest.raises(ValueError, match="no swept tau"):
        select_operating_point(CURVES, "safety", -1.0)


def test_cli_writes_artifacts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The command writes the reference's files plus a picture and the operating point."""
    (tmp_path / "q.json").write_text(json.dumps({"q_abs": INPUTS["q_abs"]}))
    (tmp_path / "r.json").write_text(json.dumps({"is_in_range": INPUTS["is_in_range"]}))
    out = tmp_path / "sweep"
    assert (
        main(
            [
                "tau",
                "sweep",
                "--q-abs",
                str(tmp_path / "q.json"),
                "--in-range",
                str(tmp_path / "r.json"),
                "--taus",
                *map(str, INPUTS["taus"]),
                "--out",
                str(out),
                "--select",
                "safety",
                "--bound",
                "0.0",
            ]
        )
        == 0
    )
    assert (out / "tau_infer_sweep.md").read_text() == (SWEEP / "tau_infer_sweep.md").read_text()
    written = json.loads((out / "tau_infer_sweep.json").read_text())
    assert written["curves"] == json.loads((SWEEP / "tau_infer_sweep.json").read_text())["curves"]
    assert (out / "tau_infer_sweep.svg").read_text().startswith("<svg")
    point = json.loads((out / "operating_point.json").read_text())
    assert point["tau_infer"] == 0.001 and point["expected_acceptance_rate"] == 0.5
    assert "tau_infer=0.001" in capsys.readouterr().out
