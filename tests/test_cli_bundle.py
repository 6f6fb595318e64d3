"""``scm-worker bundle validate|inspect|run`` and ``demo`` as a user runs them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FIXTURES, same_array
from worker.cli import EXIT_FATAL, EXIT_INVALID, EXIT_OK, EXIT_USAGE, main
from worker.inference import FIELDS

SCALAR = FIXTURES / "v061_scalar_rational" / "bundle"
LEGACY = FIXTURES / "v051_legacy_v1_scalar" / "bundle"
SCALAR_DIGEST = "4909ed6425c9e02757c12f2115b8669a6a78a341ecbb49596e92ee860f0c691c"


class TestValidate:
    """Exit 0 when valid; non-zero with the reason when not."""

    def test_valid(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A good bundle validates and names its digest."""
        assert main(["bundle", "validate", str(SCALAR)]) == EXIT_OK
        assert SCALAR_DIGEST in capsys.readouterr().out

    def test_pinned_digest(self) -> None:
        """The right pin passes, in any case and with whitespace; a wrong one fails."""
        assert (
            main(
                ["bundle", "validate", str(SCALAR), "--expect-digest", f" {SCALAR_DIGEST.upper()} "]
            )
            == EXIT_OK
        )
        assert (
            main(["bundle", "validate", str(SCALAR), "--expect-digest", "0" * 64]) == EXIT_INVALID
        )

    def test_malformed_pin_is_a_usage_error(self) -> None:
        """A pin that is not 64 hex characters is refused before anything is read."""
        assert main(["bundle", "validate", str(SCALAR), "--expect-digest", "abc"]) == EXIT_USAGE

    def test_legacy_needs_the_flag(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Unverified legacy bundles are refused unless explicitly allowed."""
        assert main(["bundle", "validate", str(LEGACY)]) == EXIT_INVALID
        assert "--allow-unverified-legacy" in capsys.readouterr().err
        assert main(["bundle", "validate", str(LEGACY), "--allow-unverified-legacy"]) == EXIT_OK

    def test_json_report_names_file_field_expected_found(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The JSON error carries the file, the field, the expectation and the finding."""
        bundle = tmp_path / "bundle"
        shutil.copytree(SCALAR, bundle)
        meta = json.loads((bundle / "metadata.json").read_text())
        meta["model_bytes"] = 1
        (bundle / "metadata.json").write_text(json.dumps(meta))
        assert main(["bundle", "validate", str(bundle), "--json"]) == EXIT_INVALID
        report = json.loads(capsys.readouterr().out)
        error = report["errors"][0]
        assert report["valid"] is False
        assert error["file"] == "model.onnx"
        assert "model_bytes" in error["field"]
        assert error["expected"] == "1 bytes" and error["found"] == "4790 bytes"

    def test_missing_directory(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A path that is not there says so in one line."""
        assert main(["bundle", "validate", str(tmp_path / "nope")]) == EXIT_INVALID
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "no such directory" in err[0]

    def test_symlinked_model_is_refused(self, tmp_path: Path) -> None:
        """A model file reached through a symlink is refused even when its hash matches."""
        bundle = tmp_path / "bundle"
        shutil.copytree(SCALAR, bundle)
        (tmp_path / "real.onnx").write_bytes((bundle / "model.onnx").read_bytes())
        (bundle / "model.onnx").unlink()
        os.symlink(tmp_path / "real.onnx", bundle / "model.onnx")
        assert main(["bundle", "validate", str(bundle)]) == EXIT_INVALID


class TestInspect:
    """inspect shows what a deployment needs to audit."""

    def test_json(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Inputs, adapter, thresholds and digests are all there."""
        assert (
            main(["bundle", "inspect", str(LEGACY), "--allow-unverified-legacy", "--json"])
            == EXIT_OK
        )
        info = json.loads(capsys.readouterr().out)
        assert info["adapter"] == "v1-recovered"
        assert info["verified"] is False
        assert info["inputs"] == [
            {"name": "input_0", "graph_name": "input_0", "dtype": "float32", "shape": ["batch", 1]}
        ]
        assert info["thresholds"]["graph"]["tau_infer"] == float(np.float32(1e-3))

    def test_text(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The text form names the adapter and the digest."""
        assert main(["bundle", "inspect", str(SCALAR)]) == EXIT_OK
        out = capsys.readouterr().out
        assert "v2-passthrough" in out and SCALAR_DIGEST in out


class TestRun:
    """run writes exactly the six fields, with the contract's dtypes, one row per input row."""

    @pytest.mark.parametrize("fixture", ["v061_two_named_inputs", "v061_shared_denominator"])
    def test_matches_reference(self, tmp_path: Path, fixture: str) -> None:
        """OUT.npz equals zeroproofml's outputs field by field."""
        with np.load(FIXTURES / fixture / "cases.npz") as data:
            inputs = {
                k.removeprefix("input__"): data[k] for k in data.files if k.startswith("input__")
            }
            reference = {name: data[f"ort__{name}"] for name in FIELDS}
        np.savez(tmp_path / "in.npz", **inputs)
        out = tmp_path / "out" / "out.npz"
        assert (
            main(
                [
                    "bundle",
                    "run",
                    str(FIXTURES / fixture / "bundle"),
                    "--inputs",
                    str(tmp_path / "in.npz"),
                    "--out",
                    str(out),
                ]
            )
            == EXIT_OK
        )
        with np.load(out) as result:
            assert sorted(result.files) == sorted(FIELDS)
            for name in FIELDS:
                assert same_array(result[name], reference[name]), name

    def test_float64_inputs_are_cast_to_the_graph_dtype(self, tmp_path: Path) -> None:
        """JSON-born float64 arrays feed a float32 graph like float32 arrays would."""
        with np.load(FIXTURES / "v061_scalar_rational" / "cases.npz") as data:
            x = data["input__input_0"]
            expected = data["ort__bottom_mask"]
        np.savez(tmp_path / "in.npz", input_0=x.astype(np.float64))
        assert (
            main(
                [
                    "bundle",
                    "run",
                    str(SCALAR),
                    "--inputs",
                    str(tmp_path / "in.npz"),
                    "--out",
                    str(tmp_path / "out.npz"),
                ]
            )
            == EXIT_OK
        )
        with np.load(tmp_path / "out.npz") as result:
            assert np.array_equal(result["bottom_mask"], expected)
            assert result["decoded"].dtype == np.float32

    @pytest.mark.parametrize(
        ("arrays", "message"),
        [
            ({"wrong": np.zeros((2, 1), np.float32)}, "expected arrays named"),
            ({"input_0": np.zeros((2, 3), np.float32)}, "expected shape"),
            ({"input_0": np.zeros((2,), np.float32)}, "expected shape"),
            ({"input_0": np.array([["a"], ["b"]])}, "found dtype"),
        ],
    )
    def test_mismatched_inputs(
        self,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        arrays: dict[str, np.ndarray],
        message: str,
    ) -> None:
        """Wrong names, shapes and dtypes are clear errors, not ONNX Runtime tracebacks."""
        np.savez(tmp_path / "in.npz", **arrays)
        code = main(
            [
                "bundle",
                "run",
                str(SCALAR),
                "--inputs",
                str(tmp_path / "in.npz"),
                "--out",
                str(tmp_path / "out.npz"),
            ]
        )
        assert code == EXIT_INVALID
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
        assert not (tmp_path / "out.npz").exists()

    def test_unreadable_inputs(self, tmp_path: Path) -> None:
        """A file that is not an .npz is a fatal configuration error with one line."""
        (tmp_path / "in.npz").write_text("not a zip")
        assert (
            main(
                [
                    "bundle",
                    "run",
                    str(SCALAR),
                    "--inputs",
                    str(tmp_path / "in.npz"),
                    "--out",
                    str(tmp_path / "out.npz"),
                ]
            )
            == EXIT_FATAL
        )


def test_demo_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The offline demo scores simulated readings and publishes no bottom as a number."""
    assert main(["demo", "--offline", "--samples", "2000"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "bottoms published as numbers: 0" in out


def test_console_entry_point() -> None:
    """``python -m worker`` reaches the same CLI with the same exit codes."""
    done = subprocess.run(
        [sys.executable, "-m", "worker", "bundle", "validate", str(LEGACY)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == EXIT_INVALID
    assert "schema_version" in done.stderr
