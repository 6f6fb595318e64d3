"""replay --direction-head, then calibrate fit, tune-threshold and report, as operators run them."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import FIXTURES
from worker.bundle import verify_bundle
from worker.calibration.calibrators import Temperature, calibrate, softmax
from worker.calibration.fit import fit_temperature
from worker.calibration.store import load_store
from worker.cli import main
from worker.fleet.simulate import simulate_readings

BUNDLE = FIXTURES / "v061_reference_robotics_seed7" / "bundle"
HEADS = Path(__file__).parent / "fixtures" / "direction"
HEAD2 = HEADS / "head2.onnx"
HOUR = 3600.0


def fleet_messages(n: int, seed: int) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Even rows from arm-1 (enough for its own calibrator), odd rows spread over 5 others.

    The truth is the sign of dx, flipped for 15% of rows: the head (logits +-60 dx) is
    overconfident, so the fitted temperature must exceed 1.
    """
    rng = np.random.default_rng(seed)
    readings = simulate_readings(n, rng).astype(np.float64)
    messages, labels = [], {}
    for i, row in enumerate(readings):
        device = "arm-1" if i % 2 == 0 else f"arm-{2 + (i // 2) % 5}"
        message = {
            "message_id": f"c-{seed}-{i}",
            "device_id": device,
            "inputs": {"input_0": [None if np.isnan(v) else float(v) for v in row]},
            "ts": 1_700_000_000 + i * HOUR,
        }
        messages.append(message)
        above = row[2] > 0
        if rng.random() < 0.15:
            above = not above
        labels[message["message_id"]] = "above" if above else "below"
    return messages, labels


@pytest.fixture(scope="module", name="run")
def _run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("calib")
    messages, labels = fleet_messages(1200, seed=5)
    (tmp / "recorded.jsonl").write_text("\n".join(json.dumps(m) for m in messages) + "\n")
    (tmp / "labels.jsonl").write_text(
        "\n".join(json.dumps({"message_id": k, "label": v}) for k, v in labels.items()) + "\n"
    )
    out = tmp / "run"
    code = main(
        [
            "replay",
            "--bundle",
            str(BUNDLE),
            "--from-file",
            str(tmp / "recorded.jsonl"),
            "--out",
            str(out),
            "--direction-head",
            str(HEAD2),
        ]
    )
    assert code == 0
    return out, tmp / "labels.jsonl", messages


def fit(run: tuple[Path, Path, Any], out: Path, *extra: str) -> int:
    return main(
        [
            "calibrate",
            "fit",
            "--replay",
            str(run[0]),
            "--labels",
            str(run[1]),
            "--out",
            str(out),
            *extra,
        ]
    )


def test_replay_saves_head_logits(run: tuple[Path, Path, list[dict[str, Any]]]) -> None:
    """head_logits.npy rows are the head on each scored message; run.json names the head."""
    run_dir, _, messages = run
    logits = np.load(run_dir / "head_logits.npy")
    # Any broken reading makes the whole row NaN (0 * NaN in the MatMul), as for the bundle.
    x = np.array(
        [[np.nan if v is None else v for v in m["inputs"]["input_0"]] for m in messages],
        dtype=np.float32,
    )
    dx = np.where(np.isnan(x).any(axis=1), np.nan, x[:, 2])
    assert logits.shape == (len(messages), 2)
    expected = np.stack([-60 * dx, 60 * dx], axis=1).astype(np.float32)
    np.testing.assert_allclose(logits, expected, rtol=1e-6, atol=1e-6)
    summary = json.loads((run_dir / "run.json").read_text())
    head = summary["direction_head"]
    assert head["input"] == "input_0" and head["labels"] == ["below", "above"]
    assert len(head["sha256"]) == 64
    with np.load(run_dir / "outputs.npz") as data:
        assert data["ts"][1] - data["ts"][0] == HOUR


def test_fit_temperature_store(
    run: tuple[Path, Path, list[dict[str, Any]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Global T from the spec's search on all rows; only arm-1 passes the eligibility gate."""
    store_dir = tmp_path / "store"
    assert fit(run, store_dir, "--method", "temperature") == 0
    bundle = verify_bundle(BUNDLE)
    summary = json.loads((run[0] / "run.json").read_text())
    store = load_store(
        store_dir,
        bundle_digest=bundle.digest,
        head_sha256=summary["direction_head"]["sha256"],
        classes=["below", "above"],
    )
    assert sorted(store.devices) == ["arm-1"]
    assert store.manifest.eligibility is not None
    assert store.manifest.eligibility.min_distinct_labels == 2  # capped at the head's width
    logits = np.load(run[0] / "head_logits.npy")
    finite = np.isfinite(logits).all(axis=1)
    labels = {
        json.loads(line)["message_id"]: json.loads(line)["label"]
        for line in run[1].read_text().splitlines()
    }
    with np.load(run[0] / "outputs.npz") as data:
        truth = np.array([labels[m] == "above" for m in data["message_id"]], dtype=int)
    expected = fit_temperature(logits[finite], truth[finite])
    assert store.global_calibrator == expected
    assert isinstance(expected, Temperature) and expected.temperature > 1.0
    out = capsys.readouterr().out
    assert "own calibrator for 1 of 6 devices" in out
    assert "arm-2: 120 samples" in out


def test_fit_isotonic_and_report(
    run: tuple[Path, Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """An isotonic store; the report's ECE drops and the picture is well-formed SVG."""
    store_dir = tmp_path / "iso"
    assert fit(run, store_dir, "--method", "isotonic") == 0
    report_dir = tmp_path / "report"
    code = main(
        [
            "calibrate",
            "report",
            "--replay",
            str(run[0]),
            "--labels",
            str(run[1]),
            "--store",
            str(store_dir),
            "--out",
            str(report_dir),
        ]
    )
    assert code == 0
    report = json.loads((report_dir / "calibration_report.json").read_text())
    assert report["ece_after"] < report["ece_before"] / 2
    root = ET.fromstring((report_dir / "reliability.svg").read_text())
    assert root.tag.endswith("svg")
    assert f"ECE {report['ece_before']:.4f}" in (report_dir / "reliability.svg").read_text()


def test_tune_threshold(
    run: tuple[Path, Path, list[dict[str, Any]]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A threshold inside the band is found; an impossible band exits 1 and says so."""
    store_dir = tmp_path / "store"
    assert fit(run, store_dir, "--method", "temperature") == 0
    base = ["calibrate", "tune-threshold", "--replay", str(run[0]), "--labels", str(run[1])]
    report = tmp_path / "tuning.json"
    assert main([*base, "--store", str(store_dir), "--out", str(report)]) == 0
    tuned = json.loads(report.read_text())
    best = tuned["best_threshold"]
    chosen = next(r for r in tuned["sweep"] if r["threshold"] == best)
    assert 0.05 <= chosen["reject_rate"] <= 0.30
    in_band = [r for r in tuned["sweep"] if 0.05 <= r["reject_rate"] <= 0.30]
    assert chosen["accuracy_on_accepted"] == max(r["accuracy_on_accepted"] for r in in_band)
    capsys.readouterr()
    assert main([*base, "--store", str(store_dir), "--band", "0.9:1.0", "--grid", "0.5,0.6"]) == 1
    assert "no threshold qualifies" in capsys.readouterr().err


def test_tune_refuses_store_of_another_bundle(
    run: tuple[Path, Path, list[dict[str, Any]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store whose manifest names another bundle is refused (exit 3, one line)."""
    store_dir = tmp_path / "store"
    assert fit(run, store_dir, "--method", "temperature") == 0
    manifest = json.loads((store_dir / "store.json").read_text())
    manifest["bundle_digest"] = "0" * 64
    (store_dir / "store.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    code = main(
        [
            "calibrate",
            "tune-threshold",
            "--replay",
            str(run[0]),
            "--labels",
            str(run[1]),
            "--store",
            str(store_dir),
        ]
    )
    err = capsys.readouterr().err
    assert code == 3 and "fitted for another bundle" in err and err.count("\n") == 1


def test_fit_needs_head_logits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A replay made without --direction-head is refused with the reason."""
    messages, labels = fleet_messages(20, seed=9)
    (tmp_path / "in.jsonl").write_text("\n".join(json.dumps(m) for m in messages) + "\n")
    (tmp_path / "labels.csv").write_text(
        "message_id,label\n" + "".join(f"{k},{v}\n" for k, v in labels.items())
    )
    args = ["--bundle", str(BUNDLE), "--from-file", str(tmp_path / "in.jsonl")]
    assert main(["replay", *args, "--out", str(tmp_path / "run")]) == 0
    run = (tmp_path / "run", tmp_path / "labels.csv", None)
    assert fit(run, tmp_path / "store", "--method", "temperature") == 3
    assert "expected a replay made with --direction-head" in capsys.readouterr().err


def test_calibrated_confidence_drops_for_overconfident_head() -> None:
    """Sanity of the picture: T > 1 lowers confidence of +-60 dx logits."""
    z = np.array([[-6.0, 6.0]])
    assert calibrate(Temperature(2.0), z)[0, 1] < softmax(z)[0, 1]
