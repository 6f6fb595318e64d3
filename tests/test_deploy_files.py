"""docker-compose.yml cannot run here (no Docker engine); check it against the CLI instead."""

from __future__ import annotations

from pathlib import Path

import yaml

from worker.cli import build_parser

ROOT = Path(__file__).parent.parent


def _run_flags() -> set[str]:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    run = commands.choices["run"]  # type: ignore[index]
    return {option for action in run._actions for option in action.option_strings}


def test_worker_environment_matches_run_flags() -> None:
    """Every SCM_WORKER_* variable of the worker service is a `scm-worker run` flag."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    worker = compose["services"]["worker"]
    assert worker["command"] == ["run"]
    flags = _run_flags()
    for name in worker["environment"]:
        assert name.startswith("SCM_WORKER_")
        flag = "--" + name.removeprefix("SCM_WORKER_").lower().replace("_", "-")
        assert flag in flags, f"{name} has no flag {flag}"
    for flag in (
        "--bundle",
        "--bootstrap-servers",
        "--group-id",
        "--input-topic",
        "--results-topic",
        "--solver-topic",
        "--dlq-topic",
    ):
        assert f"SCM_WORKER_{flag[2:].upper().replace('-', '_')}" in worker["environment"]


def test_mounted_bundles_exist_and_pins_match() -> None:
    """Host paths of read-only bundle mounts exist; the pinned digest is the shipped bundle's."""
    from worker.bundle import verify_bundle

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for service in ("worker", "bundle-check"):
        for volume in compose["services"][service]["volumes"]:
            host, _, mode = volume.split(":")
            assert (ROOT / host).is_dir() and mode == "ro"
    digest = compose["services"]["worker"]["environment"]["SCM_WORKER_EXPECT_DIGEST"]
    shipped = verify_bundle(ROOT / "worker" / "data" / "bundles" / "reference_robotics_seed7")
    assert shipped.digest == digest
    assert digest in compose["services"]["bundle-check"]["command"]


def test_images_are_official_or_built_here() -> None:
    """Kafka comes from the official apache/kafka image; our services build deploy/Dockerfile."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        if "image" in service:
            assert service["image"].startswith("apache/kafka:"), name
        else:
            assert service["build"]["dockerfile"] == "deploy/Dockerfile", name
    assert (ROOT / "deploy" / "Dockerfile").is_file()
