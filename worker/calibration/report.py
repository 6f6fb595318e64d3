"""Reliability diagrams before and after calibration, with ECE, as one SVG picture.

Hand-written SVG, like the tau sweep picture: no plotting library in the worker.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from worker.calibration.tune import Reliability

SIZE, PAD, GAP = 300, 48, 40


def _panel(x0: float, title: str, rel: Reliability, color: str) -> list[str]:
    def px(v: float) -> float:
        return x0 + PAD + v * SIZE

    def py(v: float) -> float:
        return PAD + 24 + (1 - v) * SIZE

    parts = [
        f'<text x="{px(0.5):.1f}" y="{PAD + 8}" text-anchor="middle" font-size="14">'
        f"{escape(title)} — ECE {rel.ece:.4f}</text>",
        f'<rect x="{px(0):.1f}" y="{py(1):.1f}" width="{SIZE}" height="{SIZE}" '
        'fill="none" stroke="#999"/>',
        f'<line x1="{px(0):.1f}" y1="{py(0):.1f}" x2="{px(1):.1f}" y2="{py(1):.1f}" '
        'stroke="#bbb" stroke-dasharray="4 3"/>',
    ]
    for tick in (0.0, 0.5, 1.0):
        parts.append(
            f'<text x="{px(tick):.1f}" y="{py(0) + 16:.1f}" text-anchor="middle">{tick:.1f}</text>'
        )
        parts.append(
            f'<text x="{px(0) - 6:.1f}" y="{py(tick) + 4:.1f}" text-anchor="end">{tick:.1f}</text>'
        )
    width = SIZE / len(rel.counts)
    for b, (acc, count) in enumerate(zip(rel.accuracy, rel.counts, strict=True)):
        if acc is None:
            continue
        left = px(rel.edges[b])
        parts.append(
            f'<rect x="{left:.1f}" y="{py(acc):.1f}" width="{width - 2:.1f}" '
            f'height="{py(0) - py(acc):.1f}" fill="{color}" fill-opacity="0.7">'
            f"<title>n={count}</title></rect>"
        )
    points = " ".join(
        f"{px(c):.1f},{py(a):.1f}"
        for c, a in zip(rel.confidence, rel.accuracy, strict=True)
        if c is not None and a is not None
    )
    parts.append(f'<polyline fill="none" stroke="black" stroke-width="1.5" points="{points}"/>')
    parts.append(
        f'<text x="{px(0.5):.1f}" y="{py(0) + 34:.1f}" text-anchor="middle">confidence</text>'
    )
    parts.append(
        f'<text x="{px(0) - 30:.1f}" y="{py(0.5):.1f}" text-anchor="middle" '
        f'transform="rotate(-90 {px(0) - 30:.1f} {py(0.5):.1f})">accuracy</text>'
    )
    return parts


def reliability_svg(before: Reliability, after: Reliability, subtitle: str = "") -> str:
    """Two panels side by side: accuracy per confidence bin, the diagonal is perfect."""
    width = 2 * (SIZE + 2 * PAD) + GAP
    height = SIZE + 2 * PAD + 48
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="15">'
        f"Direction head reliability {escape(subtitle)}</text>",
        *_panel(0, "before (raw softmax)", before, "#d62728"),
        *_panel(SIZE + 2 * PAD + GAP, "after (calibrated)", after, "#1f77b4"),
        "</svg>",
    ]
    return "\n".join(parts) + "\n"
