"""Policies: refused on every kind of mismatch with the exact reason, accepted when right."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES
from worker.cli import main
from worker.errors import ConfigError
from worker.policy.check import load_policy
from worker.policy.model import parse_policy, read_policy

ROBOTICS = FIXTURES / "v061_reference_robotics_seed7" / "bundle"


@pytest.fixture(name="policy_path")
def _policy_path(tmp_path: Path) -> Path:
    shutil.copytree(ROBOTICS, tmp_path / "bundle")
    path = tmp_path / "policy.json"
    assert (
        main(
            [
                "policy",
                "create",
                "--bundle",
                str(tmp_path / "bundle"),
                "--out",
                str(path),
                "--name",
                "robotics",
                "--revision",
                "r1",
                "--expected-acceptance-rate",
                "0.95",
            ]
        )
        == 0
    )
    return path


def _mutate(path: Path, change: Any) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


class TestPolicyValidation:
    """`policy validate` cross-checks everything the policy names."""

    def test_created_policy_is_valid(
        self, policy_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A freshly created policy validates, pinned to the bundle's digests."""
        assert main(["policy", "validate", str(policy_path)]) == 0
        policy, _ = read_policy(policy_path)
        assert policy.bundle.path == "bundle"
        assert policy.operating_point is not None
        assert (
            policy.operating_point.tau_infer
            == json.loads((ROBOTICS / "metadata.json").read_text())["tau_infer"]
        )
        assert "valid:" in capsys.readouterr().out

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            (lambda d: d["bundle"].update(manifest_sha256="0" * 64), "manifest digest"),
            (lambda d: d["bundle"].update(model_sha256="1" * 64), "bundle.model_sha256"),
            (lambda d: d["operating_point"].update(tau_infer=0.5), "operating_point.tau_infer"),
            (
                lambda d: d.update(
                    direction_head={
                        "model_path": "head.onnx",
                        "model_sha256": "2" * 64,
                        "labels": ["below", "sideways"],
                    }
                ),
                "direction_head.labels",
            ),
            (
                lambda d: d.update(
                    direction_head={
                        "model_path": "metadata.json",
                        "model_sha256": "2" * 64,
                        "calibrator_store": "nowhere",
                    }
                ),
                "direction_head",
            ),
            (lambda d: d["bundle"].update(path="missing-bundle"), "bundle"),
            (lambda d: d.update(policy_version=2), "policy_version"),
            (lambda d: d.update(surprise=True), "surprise"),
        ],
    )
    def test_mismatch_is_refused(
        self, policy_path: Path, change: Any, message: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Each kind of mismatch is refused with a message naming it."""
        _mutate(policy_path, change)
        assert main(["policy", "validate", str(policy_path)]) == 1
        out = capsys.readouterr().out
        assert out.startswith("invalid:") and message in out

    def test_load_policy_refuses_a_tampered_bundle(self, policy_path: Path) -> None:
        """A bundle changed after the policy was written no longer matches its pin."""
        meta = policy_path.parent / "bundle" / "metadata.json"
        meta.write_text(meta.read_text().replace('"route_to_analytic_solver"', '"other"'))
        policy, digest = read_policy(policy_path)
        with pytest.raises(ConfigError, match="manifest digest"):
            load_policy(policy, digest, policy_path)

    def test_not_json(self) -> None:
        """Garbage is refused with the source named."""
        with pytest.raises(ConfigError, match=r"p\.json"):
            parse_policy(b"{", "p.json")
