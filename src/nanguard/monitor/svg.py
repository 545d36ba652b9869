"""The learning-rate range test's plot: a self-contained SVG (no plotting library needed)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

if TYPE_CHECKING:
    from nanguard.monitor.lr_find import LRFinding

W, H, LEFT, RIGHT, TOP, BOTTOM = 640, 400, 70, 20, 40, 50


def lr_plot(found: LRFinding) -> str:
    rates = found.learning_rates[: len(found.losses)]
    losses = found.losses
    if not rates:
        rates, losses = found.learning_rates[:1] or [1.0], [0.0]
    lo_x, hi_x = math.log10(rates[0]), math.log10(max(rates[-1], rates[0] * 10))
    best = min(losses)
    top = min(max(losses), best * 4 if best > 0 else max(losses)) or 1.0
    low = min(0.0, best)

    def px(rate: float) -> float:
        return LEFT + (math.log10(rate) - lo_x) / (hi_x - lo_x) * (W - LEFT - RIGHT)

    def py(loss: float) -> float:
        clipped = min(max(loss, low), top)
        return TOP + (1 - (clipped - low) / ((top - low) or 1.0)) * (H - TOP - BOTTOM)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{LEFT}" y="22" font-size="14">{escape(_title(found))}</text>',
        f'<line x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}" stroke="black"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{H - BOTTOM}" stroke="black"/>',
    ]
    for decade in range(math.ceil(lo_x), math.floor(hi_x) + 1):
        x = px(10.0**decade)
        parts.append(
            f'<line x1="{x:.1f}" y1="{H - BOTTOM}" x2="{x:.1f}" y2="{H - BOTTOM + 5}" '
            'stroke="black"/>'
        )
        parts.append(
            f'<text x="{x:.1f}" y="{H - BOTTOM + 18}" text-anchor="middle">1e{decade}</text>'
        )
    for frac in (0.0, 0.5, 1.0):
        value = low + frac * (top - low)
        parts.append(
            f'<text x="{LEFT - 6}" y="{py(value) + 4:.1f}" text-anchor="end">{value:.3g}</text>'
        )
    parts.append(
        f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 12}" text-anchor="middle">'
        "learning rate (log scale)</text>"
    )
    parts.append(
        f'<text x="16" y="{(TOP + H - BOTTOM) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 16 {(TOP + H - BOTTOM) / 2})">loss (smoothed)</text>'
    )
    points = " ".join(f"{px(r):.1f},{py(v):.1f}" for r, v in zip(rates, losses, strict=False))
    parts.append(f'<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{points}"/>')
    for rate, color, label in (
        (found.suggestion, "#2ca02c", "suggested"),
        (found.largest_stable, "#ff7f0e", "largest stable"),
        (found.diverged_at, "#d62728", "diverged"),
    ):
        if rate is not None and rates[0] <= rate <= rates[-1] * 10:
            x = px(rate)
            parts.append(
                f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{H - BOTTOM}" '
                f'stroke="{color}" stroke-dasharray="4 3"/>'
            )
            parts.append(
                f'<text x="{x + 3:.1f}" y="{TOP + 12}" fill="{color}">{label} {rate:.2g}</text>'
            )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _title(found: LRFinding) -> str:
    return "learning-rate range test: " + found.summary()
