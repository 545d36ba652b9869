"""A self-contained HTML page of a run report (no CDN, no external file).

Every name and message that comes from the user's model or data is escaped.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from nanguard.contract import Incident, Report, Run

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#222}
h1{font-size:1.4rem} h2{font-size:1.15rem;margin-top:2rem}
.card{border:2px solid #c0392b;border-radius:8px;padding:1rem 1.2rem;margin:1rem 0}
.card.ok{border-color:#27ae60} .cause{font-size:1.25rem;font-weight:700;color:#c0392b}
dt{font-weight:600;margin-top:.5rem} dd{margin-left:1rem} code{background:#f4f4f4;padding:0 .2rem}
.fix{color:#1e7e34;font-weight:600}
"""


def _listing(values: list[int]) -> str:
    return escape(", ".join(map(str, values[:50])) + (" ..." if len(values) > 50 else ""))


def _incident(incident: Incident) -> str:
    rows = [
        f'<div class="cause">{escape(incident.root_cause)}</div>',
        f"<p>{escape(incident.symptom)} at step {incident.step}"
        + (
            f" (epoch {incident.epoch}, batch {incident.batch})"
            if incident.epoch is not None
            else ""
        )
        + f" &middot; confidence {incident.confidence:.0%}"
        + f" &middot; action: {escape(incident.action)}</p><dl>",
    ]
    if incident.layer:
        rows.append(
            f"<dt>Layer</dt><dd>{escape(incident.layer)}"
            + (f", op {escape(incident.op)}" if incident.op else "")
            + "</dd>"
        )
    if incident.samples:
        rows.append(f"<dt>Samples in the batch</dt><dd>{_listing(incident.samples)}</dd>")
    if incident.dataset_indices:
        rows.append(f"<dt>Dataset rows</dt><dd>{_listing(incident.dataset_indices)}</dd>")
    if incident.evidence:
        rows.append(
            "<dt>Evidence</dt>" + "".join(f"<dd>{escape(e)}</dd>" for e in incident.evidence)
        )
    if incident.fixes:
        rows.append(
            "<dt>Fixes</dt>"
            + "".join(
                f'<dd class="{"fix" if i == 0 else ""}">{escape(f)}</dd>'
                for i, f in enumerate(incident.fixes)
            )
        )
    rows.append("</dl>")
    return '<div class="card">' + "".join(rows) + "</div>"


def _run(run: Run) -> str:
    head = (
        f"<h2>{escape(run.kind)} &middot; {escape(run.model)} &middot; {escape(run.status)}</h2>"
        f"<p>{run.steps} steps, policy {escape(run.policy)}; epoch losses: "
        f"{escape(', '.join(f'{v:.4g}' for v in run.epoch_losses)) or 'none'}</p>"
    )
    if not run.incidents:
        return head + '<div class="card ok">No non-finite value.</div>'
    return head + "".join(_incident(i) for i in run.incidents[:20])


def render_html(report: Report) -> str:
    body = "".join(_run(run) for run in report.runs) or "<p>No training run was guarded.</p>"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>nanguard report</title>"
        f"<style>{_STYLE}</style></head><body><h1>nanguard report</h1>{body}</body></html>"
    )


def save_html(report: Report, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report), encoding="utf-8")
    return path
