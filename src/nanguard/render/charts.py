"""Inline SVG charts for the HTML report: no script, no external file, every label escaped.

Charts over steps share one horizontal frame (``LEFT`` .. ``WIDTH - RIGHT``), so the loss curve,
the gradient heat map and the warning timeline line up and a spike can be followed down the
page. The heat map is a tiny PNG (one pixel per bucket and variable) scaled up in the SVG, which
keeps a 600-bucket by 40-variable map at a few kilobytes.
"""

from __future__ import annotations

import base64
import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import numpy as np

WIDTH, LEFT, RIGHT = 960, 190, 24
PLOT = WIDTH - LEFT - RIGHT
FLOAT16_MAX = 65504.0

BLUE, BAND, RED, AMBER, PURPLE, GREY = (
    "#2563eb",
    "#bfdbfe",
    "#dc2626",
    "#d97706",
    "#7c3aed",
    "#9ca3af",
)
PALETTE = (
    "#2563eb",
    "#ea580c",
    "#16a34a",
    "#9333ea",
    "#0891b2",
    "#be185d",
    "#65a30d",
    "#a16207",
    "#4f46e5",
    "#0d9488",
)
SEVERITY_COLOUR = {"info": "#6b7280", "warning": AMBER, "critical": RED}
# viridis at five stops: dark (small gradient norm) to yellow (large)
_VIRIDIS = np.array(
    [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], np.float64
)


def esc(text: object) -> str:
    return escape(str(text), quote=True)


def short(text: str, limit: int = 30) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fmt(value: float) -> str:
    if not math.isfinite(value):
        return "nan" if value != value else ("inf" if value > 0 else "-inf")
    if value == 0:
        return "0"
    if abs(value) < 1e5 and value == int(value):
        return str(int(value))
    if 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}"
    return f"{value:.2g}".replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")


# -- scales -----------------------------------------------------------------------------------


@dataclass
class Scale:
    """Maps data values in ``[lo, hi]`` to pixels in ``[a, b]``, linearly or on log10."""

    lo: float
    hi: float
    a: float
    b: float
    log: bool = False

    def __call__(self, value: float) -> float:
        v, lo, hi = value, self.lo, self.hi
        if self.log:
            v, lo, hi = math.log10(max(v, 1e-300)), math.log10(lo), math.log10(hi)
        t = (v - lo) / (hi - lo) if hi > lo else 0.5
        return self.a + (self.b - self.a) * min(max(t, -0.02), 1.02)

    def ticks(self, count: int = 5, integer: bool = False) -> list[float]:
        if self.log:
            first, last = math.floor(math.log10(self.lo)), math.ceil(math.log10(self.hi))
            stride = max(1, math.ceil((last - first) / count))
            return [
                10.0**p
                for p in range(first, last + 1, stride)
                if self.lo <= 10.0**p <= self.hi * 1.0001
            ]
        span = self.hi - self.lo
        if span <= 0:
            return [self.lo]
        raw = span / count
        mag = 10 ** math.floor(math.log10(raw))
        step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
        step = max(step, 1.0) if integer else step
        start = math.ceil(self.lo / step) * step
        return [start + i * step for i in range(int((self.hi - start) / step + 1e-9) + 1)]


def value_scale(values: Sequence[float | None], a: float, b: float, *, log_ok: bool) -> Scale:
    """A y scale over the finite values: log10 when they are positive and span over 2 decades."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return Scale(0.0, 1.0, a, b)
    lo, hi = min(finite), max(finite)
    if log_ok and lo > 0 and hi / lo > 100:
        return Scale(10 ** math.floor(math.log10(lo)), 10 ** math.ceil(math.log10(hi)), a, b, True)
    pad = (hi - lo) * 0.06 or abs(hi) * 0.1 or 1.0
    return Scale(lo - pad if lo < 0 or lo - pad > 0 else 0.0, hi + pad, a, b)


def step_scale(end: int) -> Scale:
    return Scale(0.0, float(max(end, 1)), LEFT, LEFT + PLOT)


# -- primitives -------------------------------------------------------------------------------


def svg(height: int, body: str, label: str) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{esc(label)}" '
        f'xmlns="http://www.w3.org/2000/svg">{body}</svg>'
    )


def _path(points: list[tuple[float, float]]) -> str:
    return "M" + "L".join(f"{x:.1f} {y:.1f}" for x, y in points)


def segments(xs: Sequence[float], ys: Sequence[float | None]) -> list[list[int]]:
    """Index runs where ``ys`` is finite: a line breaks where there is no value."""
    runs: list[list[int]] = []
    current: list[int] = []
    for i, y in enumerate(ys):
        if y is not None and math.isfinite(y):
            current.append(i)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs


def line(
    xs: Sequence[float],
    ys: Sequence[float | None],
    x: Scale,
    y: Scale,
    colour: str,
    width: float = 1.6,
    title: str | None = None,
) -> str:
    parts = []
    for run in segments(xs, ys):
        points = [(x(xs[i]), y(ys[i])) for i in run]  # type: ignore[arg-type]
        if len(points) == 1:
            px, py = points[0]
            parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="1.8" fill="{colour}"/>')
        else:
            parts.append(_path(points))
    paths = "".join(p for p in parts if p.startswith("M"))
    dots = "".join(p for p in parts if not p.startswith("M"))
    tip = f"<title>{esc(title)}</title>" if title else ""
    out = (
        f'<path d="{paths}" fill="none" stroke="{colour}" stroke-width="{width}" '
        f'stroke-linejoin="round">{tip}</path>'
        if paths
        else ""
    )
    return out + dots


def band(
    xs: Sequence[float],
    low: Sequence[float | None],
    high: Sequence[float | None],
    x: Scale,
    y: Scale,
    colour: str,
) -> str:
    both = [
        lo if lo is not None and hi is not None else None for lo, hi in zip(low, high, strict=True)
    ]
    shapes = []
    for run in segments(xs, both):
        top = [(x(xs[i]), y(high[i])) for i in run]  # type: ignore[arg-type]
        bottom = [(x(xs[i]), y(low[i])) for i in reversed(run)]  # type: ignore[arg-type]
        shapes.append(_path(top + bottom) + "Z")
    if not shapes:
        return ""
    return f'<path d="{"".join(shapes)}" fill="{colour}" stroke="none"/>'


def x_axis(x: Scale, top: float, bottom: float, label: str = "step") -> str:
    out = [f'<line x1="{LEFT}" y1="{bottom}" x2="{LEFT + PLOT}" y2="{bottom}" class="axis"/>']
    for t in x.ticks(8, integer=True):
        px = x(t)
        out.append(f'<line x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{bottom}" class="grid"/>')
        out.append(f'<text x="{px:.1f}" y="{bottom + 14}" class="tick mid">{fmt(t)}</text>')
    out.append(f'<text x="{LEFT + PLOT}" y="{bottom + 28}" class="tick end">{esc(label)}</text>')
    return "".join(out)


def y_axis(y: Scale, label: str) -> str:
    out = []
    for t in y.ticks(4):
        py = y(t)
        out.append(
            f'<line x1="{LEFT}" y1="{py:.1f}" x2="{LEFT + PLOT}" y2="{py:.1f}" class="grid"/>'
        )
        out.append(f'<text x="{LEFT - 6}" y="{py + 4:.1f}" class="tick end">{fmt(t)}</text>')
    mid = (y.a + y.b) / 2
    out.append(
        f'<text x="{LEFT - 56}" y="{mid:.1f}" class="label end">{esc(label)}'
        + (" (log)" if y.log else "")
        + "</text>"
    )
    return "".join(out)


def markers(
    steps: Sequence[tuple[int, str]], x: Scale, top: float, bottom: float, label: bool = True
) -> str:
    """Red dashed lines at incident steps, the first one labelled (if ``label``)."""
    out = []
    for i, (step, text) in enumerate(steps[:50]):
        px = x(step)
        out.append(
            f'<line x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{bottom}" class="incident">'
            f"<title>{esc(text)}</title></line>"
        )
        if i == 0 and label:
            anchor = "end" if px > LEFT + PLOT * 0.7 else "start"
            dx = -4 if anchor == "end" else 4
            out.append(
                f'<text x="{px + dx:.1f}" y="{top + 12}" class="flag {anchor}">{esc(text)}</text>'
            )
    return "".join(out)


# -- the heat map -----------------------------------------------------------------------------


def png(rgb: np.ndarray) -> bytes:
    """Encode an (h, w, 3) uint8 array as a PNG: no imaging library needed."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[r].tobytes() for r in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def viridis(t: np.ndarray) -> np.ndarray:
    stops = np.linspace(0, 1, len(_VIRIDIS))
    return np.stack([np.interp(t, stops, _VIRIDIS[:, c]) for c in range(3)], axis=-1)


def heat_image(values: np.ndarray, nonfinite: np.ndarray) -> tuple[bytes, float, float]:
    """PNG of log10(values) (rows x buckets): viridis, red where non-finite, grey where empty.
    Returns the PNG and the colour scale's log10 bounds."""
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log10(np.where(values > 0, values, np.nan))
    finite = logs[np.isfinite(logs)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    rgb = viridis(np.clip((np.nan_to_num(logs, nan=lo) - lo) / (hi - lo), 0, 1))
    rgb[~np.isfinite(logs)] = (229, 231, 235)
    rgb[nonfinite] = (220, 38, 38)
    return png(np.round(rgb).astype(np.uint8)), lo, hi


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def colour_key(lo: float, hi: float, x0: float, y0: float) -> str:
    """A small viridis bar with its log10 bounds, and the red non-finite swatch."""
    ramp = viridis(np.linspace(0, 1, 64))[None].round().astype(np.uint8)
    return (
        f'<text x="{x0}" y="{y0 + 9}" class="tick end">{fmt(10**lo)}</text>'
        f'<image x="{x0 + 4}" y="{y0}" width="120" height="10" preserveAspectRatio="none" '
        f'href="{data_uri(png(ramp))}"/>'
        f'<text x="{x0 + 128}" y="{y0 + 9}" class="tick">{fmt(10**hi)}</text>'
        f'<rect x="{x0 + 180}" y="{y0}" width="10" height="10" fill="{RED}"/>'
        f'<text x="{x0 + 194}" y="{y0 + 9}" class="tick">non-finite</text>'
    )


# -- histograms -------------------------------------------------------------------------------


def histogram_svg(edges: Sequence[float], counts: Sequence[int], label: str) -> str:
    """Bars of a histogram in a small 300 x 150 frame, with its range and highest count."""
    w, h, pad = 300, 150, 28
    top = max(max(counts, default=0), 1)
    n = max(len(counts), 1)
    bar = (w - 2 * pad) / n
    bars = []
    for i, c in enumerate(counts):
        bh = (h - 2 * pad) * c / top
        left = edges[i] if i < len(edges) else 0.0
        right = edges[i + 1] if i + 1 < len(edges) else left
        bars.append(
            f'<rect x="{pad + i * bar:.1f}" y="{h - pad - bh:.1f}" width="{max(bar - 1, 0.5):.1f}"'
            f' height="{bh:.1f}" fill="{BLUE}"><title>{fmt(left)} to {fmt(right)}: {c}'
            "</title></rect>"
        )
    lo = fmt(edges[0]) if edges else ""
    hi = fmt(edges[-1]) if edges else ""
    body = (
        "".join(bars)
        + f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" class="axis"/>'
        + f'<text x="{pad}" y="{h - pad + 14}" class="tick">{lo}</text>'
        + f'<text x="{w - pad}" y="{h - pad + 14}" class="tick end">{hi}</text>'
        + f'<text x="{pad}" y="{pad - 8}" class="tick">max count {top}</text>'
    )
    return (
        f'<svg class="hist" viewBox="0 0 {w} {h}" role="img" aria-label="{esc(label)}" '
        f'xmlns="http://www.w3.org/2000/svg">{body}</svg>'
    )
