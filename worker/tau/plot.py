"""An SVG picture of the sweep curves: people would rather look than read.

Hand-written SVG keeps plotting libraries (and their native dependencies) out of the worker.
"""

from __future__ import annotations

import math
from xml.sax.saxutils import escape

from worker.tau.sweep import Curves, OperatingPoint

WIDTH, HEIGHT, PAD = 640, 400, 56
SERIES = (
    ("fn_in", "#d62728", "FN_in (in range rejected)"),
    ("fp_cens", "#1f77b4", "FP_cens (censored accepted)"),
    ("bottom_rate", "#7f7f7f", "bottom rate"),
)


def sweep_svg(curves: Curves, point: OperatingPoint | None = None) -> str:
    """Curves over tau on a log axis (linear if any tau <= 0), rates on [0, 1]."""
    taus = curves["taus"]
    log_axis = all(t > 0 and math.isfinite(t) for t in taus)
    xs = [math.log10(t) if log_axis else t for t in taus]
    lo, hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    span = (hi - lo) or 1.0

    def px(x: float) -> float:
        return PAD + (x - lo) / span * (WIDTH - 2 * PAD)

    def py(y: float) -> float:
        return HEIGHT - PAD - y * (HEIGHT - 2 * PAD)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="22" text-anchor="middle" font-size="15">tau_infer sweep</text>',
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(
            f'<line x1="{PAD}" x2="{WIDTH - PAD}" y1="{py(tick):.1f}" '
            f'y2="{py(tick):.1f}" stroke="#eee"/>'
        )
        parts.append(
            f'<text x="{PAD - 6}" y="{py(tick) + 4:.1f}" text-anchor="end">{tick:.2f}</text>'
        )
    for x, tau in zip(xs, taus, strict=True):
        parts.append(
            f'<text x="{px(x):.1f}" y="{HEIGHT - PAD + 16}" text-anchor="middle">{tau:.0e}</text>'
        )
    parts.append(
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 12}" text-anchor="middle">'
        f"τ_infer{' (log scale)' if log_axis else ''}</text>"
    )
    for row, (key, color, label) in enumerate(SERIES):
        points = " ".join(
            f"{px(x):.1f},{py(y):.1f}"
            for x, y in zip(xs, curves[key], strict=True)
            if not math.isnan(y)
        )
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{points}"/>')
        parts.append(
            f'<text x="{WIDTH - PAD - 190}" y="{PAD + 16 * row}" fill="{color}">'
            f"{escape(label)}</text>"
        )
    if point is not None:
        x = px(math.log10(point.tau_infer) if log_axis else point.tau_infer)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{PAD}" y2="{HEIGHT - PAD}" '
            'stroke="black" stroke-dasharray="4 3"/>'
        )
        parts.append(
            f'<text x="{x + 4:.1f}" y="{PAD + 64}">{point.strategy}: τ={point.tau_infer:.3e}, '
            f"accept≈{point.expected_acceptance_rate:.3f}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
