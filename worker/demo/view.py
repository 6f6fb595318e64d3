"""The demo's live terminal view and its closing summary, as lines of text (pure code)."""

from __future__ import annotations

from typing import Any

from worker.demo.tally import Tally


def _pct(part: int, whole: int) -> str:
    return f"{part / whole:6.1%}" if whole else "     -"


def live_lines(tally: Tally, elapsed_s: float, rate: float, duration_s: float) -> list[str]:
    """The block redrawn in place while the demo runs."""
    c = tally.counts
    results = c["results"]
    bottoms = results - tally.provenance["none"]
    faults = tally.provenance["fault"] + tally.provenance["mixed"]
    lag = c["features"] - results - c["dead_letters"]
    alerts = ", ".join(sorted(tally.open_alerts)) or "none open"
    return [
        f"scm-worker demo  {elapsed_s:5.1f} s of {duration_s:.0f} s   {rate:8,.0f} results/s",
        f"  messages in      {c['features']:>9,}   waiting {max(lag, 0):>7,}",
        f"  results          {results:>9,}   accept {tally.routes['accept']:>7,}  "
        f"solver {tally.routes['solver']:>6,}  reject {tally.routes['reject']:>5,}",
        f"  bottom rate      {_pct(bottoms, results)}   fault {_pct(faults, results)}   "
        f"semantic {_pct(tally.provenance['semantic'] + tally.provenance['mixed'], results)}   "
        f"gap {_pct(tally.gap_samples, results)}",
        f"  solver           requests {c['solver_requests']:>7,}   answers "
        f"{c['solver_answers']:>7,}  (solved {tally.answer_status['solved']:,})",
        f"  dead letters     {c['dead_letters']:>9,}   "
        + "  ".join(f"{k} {v}" for k, v in sorted(tally.dead_letter_codes.items())),
        f"  drift            {alerts}",
    ]


def summary_lines(summary: dict[str, Any], elapsed_s: float) -> list[str]:
    """The closing summary: what happened, and the tie-out, one line a promise."""
    counts = summary["counts"]
    lines = [
        f"scm-worker demo: {counts['features']:,} messages in {elapsed_s:.1f} s",
        f"  results           {counts['results']:>9,}   routes "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(summary["routes"].items())),
        "  provenance        "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(summary["provenance"].items())),
        f"  solver requests   {counts['solver_requests']:>9,}   answers "
        f"{counts['solver_answers']:,} ("
        + ", ".join(f"{k} {v:,}" for k, v in sorted(summary["solver_answers"].items()))
        + ")",
        f"  dead letters      {counts['dead_letters']:>9,}   "
        + ", ".join(f"{k} {v}" for k, v in sorted(summary["dead_letter_codes"].items())),
        f"  monitor events    {counts['events']:>9,}   alerts "
        + (
            "; ".join(f"{a['scope']} {a['metric']} {a['state']}" for a in summary["alerts"])
            or "none"
        ),
    ]
    error = summary["accepted_vs_dls"]
    if error is not None:
        lines.append(
            f"  accepted vs damped least squares: median |err| {error['median_rad']:.4f} rad, "
            f"p99 {error['p99_rad']:.4f} rad over {error['samples']:,} samples"
        )
    lines.append("  ties out:")
    for promise, ok in summary["ties_out"].items():
        lines.append(f"    {'ok  ' if ok else 'FAIL'} {promise}")
    return lines
