"""The audit in the terminal (rich) and as a self-contained HTML page.

The page needs no network: inline CSS, histograms drawn as inline SVG. Every text that comes
from the data (column names, file paths, messages) is escaped.
"""

from __future__ import annotations

import sys
from html import escape
from typing import IO

from nanguard.audit.report import AuditReport, Finding, Histogram

_COLOR = {"error": "red", "warning": "yellow", "info": "cyan"}


def summary_line(report: AuditReport) -> str:
    severities = ("error", "warning", "info")
    counts = {s: sum(f.severity == s for f in report.findings) for s in severities}
    found = ", ".join(f"{n} {s}{'s' if n != 1 else ''}" for s, n in counts.items() if n) or (
        "nothing found"
    )
    return (
        f"nanguard audit: {report.rows} rows, {len(report.features)} features: {found} "
        f"({report.seconds:.2f} s)"
    )


def _rows(finding: Finding, limit: int = 6) -> str:
    shown = ", ".join(map(str, finding.indices[:limit]))
    return shown + (" ..." if len(finding.indices) > limit else "")


def print_report(report: AuditReport, file: IO[str] | None = None) -> None:
    """One line per finding, worst first, then the summary line."""
    from rich.console import Console
    from rich.markup import escape as rich_escape

    console = Console(file=file or sys.stdout, highlight=False)
    for note in report.notes:
        console.print(rich_escape(note), style="dim", soft_wrap=True)
    for f in report.findings:
        where = "" if f.feature is None else f" [bold]{rich_escape(str(f.feature))}[/]"
        console.print(
            f"[{_COLOR[f.severity]}]{f.severity:7}[/] {f.code}{where}: {rich_escape(f.message)}",
            soft_wrap=True,
        )
    console.print(rich_escape(summary_line(report)), soft_wrap=True)


_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:72rem;color:#222}
h1{font-size:1.4rem} h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse} td,th{padding:.25rem .6rem;border-bottom:1px solid #ddd;
text-align:left;vertical-align:top} .error{color:#c0392b;font-weight:700}
.warning{color:#b7791f;font-weight:700} .info{color:#2471a3} .num{text-align:right}
.hists{display:flex;flex-wrap:wrap;gap:1rem} figure{margin:0} figcaption{font-size:.85rem}
.note{color:#666}
"""


def _svg(hist: Histogram, width: int = 220, height: int = 90) -> str:
    top = max(hist.counts) or 1
    bar = width / max(len(hist.counts), 1)
    bars = "".join(
        f'<rect x="{i * bar:.1f}" y="{height - c / top * height:.1f}" width="{bar - 1:.1f}" '
        f'height="{c / top * height:.1f}" fill="#2e86c1"><title>{c}</title></rect>'
        for i, c in enumerate(hist.counts)
    )
    lo, hi = hist.edges[0], hist.edges[-1]
    return (
        f'<figure><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img">{bars}</svg><figcaption>{escape(hist.name)}: {lo:.4g} .. {hi:.4g}'
        "</figcaption></figure>"
    )


def render_html(report: AuditReport) -> str:
    parts = [
        "<h1>nanguard audit</h1>",
        f"<p>{escape(', '.join(report.sources))}</p>",
        f"<p><b>{escape(summary_line(report))}</b></p>",
    ]
    parts += [f'<p class="note">{escape(n)}</p>' for n in report.notes]
    if report.findings:
        rows = "".join(
            f'<tr><td class="{f.severity}">{f.severity}</td><td>{escape(f.code)}</td>'
            f"<td>{escape('' if f.feature is None else str(f.feature))}</td>"
            f'<td class="num">{f.count}</td><td>{escape(_rows(f, 20))}</td>'
            f"<td>{escape(f.message)}</td></tr>"
            for f in report.findings
        )
        parts.append(
            "<h2>Findings</h2><table><tr><th>severity</th><th>code</th><th>feature</th>"
            f"<th>count</th><th>rows / files</th><th>message</th></tr>{rows}</table>"
        )
    else:
        parts.append("<p>No finding: the data is ready for training.</p>")
    if report.histograms:
        parts.append(
            "<h2>Histograms (sampled rows)</h2><div class='hists'>"
            + "".join(_svg(h) for h in report.histograms)
            + "</div>"
        )
    if report.features:

        def num(v: float | None) -> str:
            return "" if v is None else f"{v:.6g}"

        rows = "".join(
            f"<tr><td>{escape(s.name)}</td><td class='num'>{s.count}</td>"
            f"<td class='num'>{s.nonfinite}</td><td class='num'>{num(s.min)}</td>"
            f"<td class='num'>{num(s.max)}</td><td class='num'>{num(s.mean)}</td>"
            f"<td class='num'>{num(s.std)}</td></tr>"
            for s in report.features[:2000]
        )
        parts.append(
            "<h2>Features</h2><table><tr><th>name</th><th>count</th><th>non-finite</th>"
            f"<th>min</th><th>max</th><th>mean</th><th>std</th></tr>{rows}</table>"
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>nanguard audit</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )
