"""Write ``schemas/*.schema.json`` from the models: ``python -m worker.wire.schemas [DIR]``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from worker.wire.models import DeadLetterHeaders, FeatureMessage, Result, SolverRequest

SCHEMAS: dict[str, type[BaseModel]] = {
    "feature-message.schema.json": FeatureMessage,
    "result.schema.json": Result,
    "solver-request.schema.json": SolverRequest,
    "dead-letter-headers.schema.json": DeadLetterHeaders,
}


def render(model: type[BaseModel]) -> str:
    """The committed text of one schema file."""
    schema = model.model_json_schema(by_alias=True)
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    """Regenerate every schema file."""
    target = Path(argv[0]) if argv else Path("schemas")
    for name, model in SCHEMAS.items():
        (target / name).write_text(render(model))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
