"""Write ``schemas/*.schema.json`` from the wire models.

``python -m worker.wire.schemas [DIR] [--check]``: DIR defaults to ``schemas``; ``--check``
writes nothing and exits 1 when a committed file differs from what the models generate.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Final

from pydantic import BaseModel

from worker.wire.models import (
    DeadLetterHeaders,
    FeatureMessage,
    Result,
    SolverAnswer,
    SolverRequest,
)

SCHEMAS: Final[dict[str, type[BaseModel]]] = {
    "feature-message.schema.json": FeatureMessage,
    "result.schema.json": Result,
    "solver-request.schema.json": SolverRequest,
    "solver-answer.schema.json": SolverAnswer,
    # Named for what it describes: a dead letter's key and value are the original bytes.
    "dead-letter-headers.schema.json": DeadLetterHeaders,
}


def render(model: type[BaseModel]) -> str:
    """The committed text of one schema file: sorted keys, indent 2, trailing newline."""
    schema = model.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def stale(directory: Path) -> list[str]:
    """Names of the schema files in ``directory`` that are missing or differ from the models."""
    out = []
    for name, model in SCHEMAS.items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != render(model):
            out.append(name)
    return out


def main(argv: list[str] | None = None) -> int:
    """Regenerate (or with ``--check``, verify) every schema file; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m worker.wire.schemas", description=__doc__)
    parser.add_argument("directory", nargs="?", type=Path, default=Path("schemas"))
    parser.add_argument("--check", action="store_true", help="verify instead of writing")
    args = parser.parse_args(argv)
    if args.check:
        names = stale(args.directory)
        for name in names:
            print(f"stale: {args.directory / name} (run: python -m worker.wire.schemas)")
        return 1 if names else 0
    for name, model in SCHEMAS.items():
        (args.directory / name).write_text(render(model), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
