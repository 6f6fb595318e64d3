"""The committed JSON Schemas are exactly what the wire models generate; drift fails here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from worker.wire import models
from worker.wire.decode import ErrorCode
from worker.wire.schemas import SCHEMAS, main, render, stale

SCHEMA_DIR = Path(__file__).parent.parent / "schemas"


class TestCommittedSchemas:
    """schemas/*.schema.json match the models byte for byte."""

    @pytest.mark.parametrize("name", sorted(SCHEMAS))
    def test_no_drift(self, name: str) -> None:
        """Regenerating in memory gives the committed text."""
        committed = (SCHEMA_DIR / name).read_text(encoding="utf-8")
        assert committed == render(SCHEMAS[name]), "run: python -m worker.wire.schemas"

    def test_every_message_has_a_schema(self) -> None:
        """Feature message, result, solver request, solver answer and dead-letter headers."""
        assert set(SCHEMAS.values()) == {
            models.FeatureMessage,
            models.Result,
            models.SolverRequest,
            models.SolverAnswer,
            models.DeadLetterHeaders,
        }

    def test_readme_lists_every_schema(self) -> None:
        """schemas/README.md names each generated file."""
        readme = (SCHEMA_DIR / "README.md").read_text(encoding="utf-8")
        for name in SCHEMAS:
            assert f"`{name}`" in readme

    def test_format(self) -> None:
        """Sorted keys, indent 2, a trailing newline and a declared dialect."""
        for name in SCHEMAS:
            text = (SCHEMA_DIR / name).read_text(encoding="utf-8")
            schema = json.loads(text)
            assert text == json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
            assert schema["$schema"].endswith("/draft/2020-12/schema")


class TestSchemaContent:
    """The schemas say what the contract says."""

    def test_result_fields(self) -> None:
        """The Result's fields are exactly the contract's, all required, no extras."""
        schema = json.loads(render(models.Result))
        fields = {
            "message_id",
            "device_id",
            "ts",
            "context",
            "source",
            "bundle",
            "policy",
            "direction",
            "outputs",
            "bottom",
            "gap",
            "provenance",
            "route",
            "processed_at",
        }
        assert set(schema["properties"]) == fields
        assert set(schema["required"]) == fields
        assert schema["additionalProperties"] is False
        outputs = schema["$defs"]["Outputs"]["properties"]
        assert set(outputs) == {
            "decoded",
            "bottom_mask",
            "gap_mask",
            "fault_mask",
            "semantic_bottom_mask",
            "bottom_provenance",
        }
        assert schema["properties"]["route"]["enum"] == ["accept", "solver", "reject"]

    def test_solver_request_fields(self) -> None:
        """The SolverRequest carries inputs, provenance and masks but no decoded or route."""
        schema = json.loads(render(models.SolverRequest))
        assert set(schema["properties"]) == {
            "message_id",
            "device_id",
            "ts",
            "context",
            "source",
            "bundle",
            "policy",
            "direction",
            "inputs",
            "provenance",
            "masks",
        }

    def test_feature_message_requirements(self) -> None:
        """ids, inputs required; ts and context optional; ids 1 to 128 characters."""
        schema = json.loads(render(models.FeatureMessage))
        assert sorted(schema["required"]) == ["device_id", "inputs", "message_id"]
        for key in ("message_id", "device_id"):
            assert schema["properties"][key]["minLength"] == 1
            assert schema["properties"][key]["maxLength"] == 128

    def test_dead_letter_codes_are_the_error_codes(self) -> None:
        """scm-error-code enumerates exactly ErrorCode."""
        schema = json.loads(render(models.DeadLetterHeaders))
        assert schema["$defs"]["ErrorCode"]["enum"] == [code.value for code in ErrorCode]


class TestGenerator:
    """python -m worker.wire.schemas writes the files and --check reports drift."""

    def test_writes_then_checks(self, tmp_path: Path) -> None:
        """Writing into an empty directory, then --check passes; a stale file fails it."""
        assert main([str(tmp_path), "--check"]) == 1
        assert main([str(tmp_path)]) == 0
        for name, model in SCHEMAS.items():
            assert (tmp_path / name).read_text(encoding="utf-8") == render(model)
        assert main([str(tmp_path), "--check"]) == 0
        (tmp_path / "result.schema.json").write_text("{}\n", encoding="utf-8")
        assert stale(tmp_path) == ["result.schema.json"]
        assert main([str(tmp_path), "--check"]) == 1

    def test_committed_directory_is_current(self) -> None:
        """The repository's schemas/ passes --check."""
        assert stale(SCHEMA_DIR) == []
