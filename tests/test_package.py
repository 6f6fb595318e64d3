"""Packaging facts a user relies on."""

from __future__ import annotations

from importlib.metadata import version

import worker
import worker.bundle
import worker.inference


def test_version_matches_installed_metadata() -> None:
    """``worker.__version__`` is the installed distribution's version."""
    assert worker.__version__ == version("scm-worker")


def test_public_names_are_exported() -> None:
    """Each public package lists what it exports once, and every name resolves."""
    for module in (worker, worker.bundle, worker.inference):
        assert len(set(module.__all__)) == len(module.__all__)
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_shipped_bundle_is_package_data() -> None:
    """The demo bundle travels with the package, not only with the source tree."""
    from worker.cli.demo_cmd import default_bundle_path

    assert (default_bundle_path() / "metadata.json").is_file()
    assert (default_bundle_path() / "model.onnx").is_file()
