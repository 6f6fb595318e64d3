"""The demo's short report: what ran, what came out, and whether it tied out (pure text)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from worker.demo.view import summary_lines


def render_report(summary: dict[str, Any]) -> str:
    """Markdown a reviewer can read without running anything."""
    verdict = "ties out" if summary["ok"] else "DOES NOT tie out"
    lines = [
        "# scm-worker demo report",
        "",
        f"Verdict: **{verdict}**. Every figure below was counted by an independent reader of "
        "the topics, not reported by the services.",
        "",
        "```",
        *summary_lines(summary, summary["elapsed_s"]),
        "```",
        "",
        "## Processes",
        "",
        "| service | exit code | command |",
        "| --- | --- | --- |",
    ]
    for name, command in summary["commands"].items():
        code = summary["exit_codes"].get(name)
        lines.append(f"| {name} | {code} | `{' '.join(command)}` |")
    committed = summary["committed_input_offsets"]
    lines += [
        "",
        "## Delivery",
        "",
        f"* input offsets committed by the worker's group: {committed:,} "
        f"(messages in: {summary['counts']['features']:,})",
        f"* fleet: {summary['fleet']}",
        "",
        "## Files",
        "",
        "* `summary.json`: these figures as data",
        "* `events.jsonl`: the worker's monitor events (zeroproofml conventions)",
        "* `worker.log`, `solver.log`, `fleet.log`, `broker.log`: JSON logs of each process",
        "",
    ]
    return "\n".join(lines)


def write_report(path: Path, summary: dict[str, Any]) -> None:
    """Write ``report.md``."""
    path.write_text(render_report(summary), encoding="utf-8")
