"""The README's commands are real: every `scm-worker` line in it parses with the real CLI."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from worker.cli import build_parser

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def shell_lines(text: str) -> list[str]:
    """Logical lines (continuations joined) of the ```sh blocks."""
    lines: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        lines += [line.split("#")[0].strip() for line in joined.splitlines()]
    return [line for line in lines if line.startswith("scm-worker ")]


def subparser(parser: Any, words: list[str]) -> tuple[Any, list[str]]:
    """Follow subcommand words as far as they go; return the parser and the rest."""
    while words:
        actions = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
        if not actions or words[0] not in actions[0].choices:
            break
        parser, words = actions[0].choices[words[0]], words[1:]
    return parser, words


COMMAND_LINES = shell_lines(README)


def test_the_readme_shows_commands() -> None:
    assert len(COMMAND_LINES) > 15


@pytest.mark.parametrize("line", COMMAND_LINES)
def test_every_flag_shown_exists(line: str) -> None:
    words = line.split()[1:]
    parser, rest = subparser(build_parser(), words)
    assert parser.prog != "scm-worker", f"{line!r}: no such command"
    options = {o for action in parser._actions for o in action.option_strings}
    for flag in re.findall(r"--[a-z][a-z0-9-]*", " ".join(rest)):
        assert flag in options, f"{line!r}: {flag} is not a flag of {parser.prog}"


def test_configuration_reference_lists_every_run_flag() -> None:
    run, _ = subparser(build_parser(), ["run"])
    section = README.split("## Configuration reference")[1].split("\n## ")[0]
    for action in run._actions:
        for option in action.option_strings:
            if option.startswith("--") and option != "--help":
                assert f"| `{option}" in section, f"{option} is missing from the reference"


def test_quick_start_commands_are_make_targets() -> None:
    makefile = (ROOT / "Makefile").read_text()
    quick = README.split("## Quick start")[1].split("\n## ")[0]
    for target in ("demo", "test"):
        assert f"make {target}" in quick
        assert re.search(rf"^{target}: ", makefile, flags=re.M)
    assert "$(BIN)/scm-worker demo\n" in makefile  # the demo test runs the same command
