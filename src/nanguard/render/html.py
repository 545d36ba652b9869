"""The HTML report: one self-contained file (inline CSS and SVG, no script, no external file).

Someone opens it under pressure, so the page reads top-down: what went wrong and what to change
first (the incident card), then the evidence over time: the loss with the incident marked, the
gradient norm of every variable over the steps, update/weight ratios, the activation ranges of
the replayed step against the float16 limit, and the warnings on a timeline. A Content Security
Policy forbids every fetch and script, so the page provably works offline. Every name and
message from the user's model or data goes through :func:`~nanguard.render.charts.esc`.

Plots come from a run's ``series`` (see :mod:`nanguard.render.series`), downsampled to at most
600 buckets, so a 10,000-step run stays far below 2 MB.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from nanguard.contract import Incident, Report, Run, package_version
from nanguard.render import charts as ch
from nanguard.render.charts import esc, fmt
from nanguard.render.digest import group_warnings, steps_text
from nanguard.render.series import activations
from nanguard.render.words import CAUSE, SYMPTOM, action_text, facts, where

MAX_CARDS = 20  # incident cards per run; the rest are counted
MAX_HEAT_ROWS = 40
MAX_RATIO_LINES = 8
MAX_LAYERS = 60

_STYLE = """
*{box-sizing:border-box}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1f2937;
background:#f3f4f6}
main{max-width:1000px;margin:0 auto;padding:24px 20px 60px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:19px;margin:0}
h3{font-size:15px;margin:0 0 6px;color:#374151} h4{font-size:13px;margin:14px 0 4px;
text-transform:uppercase;letter-spacing:.04em;color:#6b7280}
.sub{color:#6b7280;margin:0 0 18px;font-size:13px}
.glance{list-style:none;padding:0;margin:0 0 20px}
.glance li{background:#fff;border-radius:8px;padding:8px 12px;margin:6px 0;
border-left:5px solid #16a34a}
.glance li.bad{border-left-color:#dc2626} .glance a{color:inherit}
section.run{background:#fff;border-radius:12px;padding:18px 20px;margin:0 0 24px;
box-shadow:0 1px 3px rgba(0,0,0,.08)}
.meta{color:#4b5563;margin:2px 0 12px;font-size:13px}
.pill{display:inline-block;font-size:12px;font-weight:600;padding:1px 8px;border-radius:999px;
background:#dcfce7;color:#166534;vertical-align:middle}
.pill.bad{background:#fee2e2;color:#991b1b}
.card{border:2px solid #dc2626;border-radius:10px;padding:14px 18px;margin:10px 0 18px;
background:#fffafa}
.card.ok{border-color:#16a34a;background:#f6fef9}
.what{font-weight:600;color:#7f1d1d}
.cause{font-size:26px;font-weight:800;color:#b91c1c;margin:4px 0 0;word-break:break-word}
.conf{font-size:14px;font-weight:500;color:#6b7280;margin-left:8px}
.meaning{margin:2px 0 10px;color:#374151}
.fix{background:#ecfdf5;border:1px solid #86efac;border-radius:8px;padding:10px 14px;margin:8px 0}
.fix h4{margin:0 0 4px;color:#166534} .fix p{margin:0;font-weight:600;color:#14532d}
dl.where{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:10px 0 0}
dl.where dt{font-weight:600;color:#374151} dl.where dd{margin:0;word-break:break-word}
ul{margin:0;padding-left:20px} li{margin:1px 0}
code{font:13px ui-monospace,SFMono-Regular,Menlo,monospace;background:#f1f5f9;padding:1px 4px;
border-radius:4px}
details{margin:6px 0} summary{cursor:pointer;font-weight:600}
figure{margin:18px 0 0} figcaption{font-size:13px;color:#6b7280;margin-top:2px}
svg.chart{width:100%;height:auto;display:block;background:#fff}
svg text{font:11px system-ui,sans-serif;fill:#4b5563}
svg .tick.mid{text-anchor:middle} svg .end{text-anchor:end} svg .start{text-anchor:start}
svg .label{font-weight:600;fill:#374151} svg .flag{font-weight:700;fill:#b91c1c}
svg .axis{stroke:#9ca3af} svg .grid{stroke:#eef0f3}
svg .incident{stroke:#dc2626;stroke-width:1.5;stroke-dasharray:4 3}
svg .limit{stroke:#b91c1c;stroke-width:1.2;stroke-dasharray:6 3}
.legend{font-size:12px;color:#4b5563;margin-top:4px}
.legend span{display:inline-block;margin-right:14px;white-space:nowrap}
.legend i{display:inline-block;width:12px;height:3px;margin-right:4px;vertical-align:middle}
table{border-collapse:collapse;width:100%;font-size:13px;margin-top:6px}
td,th{border-bottom:1px solid #e5e7eb;padding:4px 6px;text-align:left;vertical-align:top}
.sev-critical{color:#b91c1c;font-weight:700} .sev-warning{color:#b45309;font-weight:600}
.sev-info{color:#6b7280}
.hists{display:grid;grid-template-columns:repeat(auto-fill,minmax(290px,1fr));gap:12px}
.hists figure{margin:0;background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:8px}
svg.hist{width:100%;height:auto} .note{font-size:12px;color:#6b7280}
"""

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def page(title: str, body: str) -> str:
    """A complete self-contained page around ``body`` (HTML), with the report's style.

    ``title`` is escaped here; ``body`` must already be escaped (build it with ``esc``)."""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{_CSP}\">"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body><main>{body}</main>"
        "</body></html>"
    )


def prose(text: str) -> str:
    """Escaped text in which `backquoted` spans become code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", esc(text))


def _listing(values: Sequence[int], limit: int = 40) -> str:
    shown = ", ".join(map(str, values[:limit]))
    return esc(shown + (f" ... ({len(values)} in all)" if len(values) > limit else ""))


# -- the incident card ------------------------------------------------------------------------


def incident_card(incident: Incident) -> str:
    rows = []
    if incident.layer:
        rows.append(("layer", esc(incident.layer)))
    if incident.op:
        rows.append(("op", f"<code>{esc(incident.op)}</code>"))
    if incident.samples:
        rows.append(("samples", "batch positions " + _listing(incident.samples)))
    if incident.dataset_indices:
        rows.append(("dataset rows", _listing(incident.dataset_indices)))
    if incident.features:
        rows.append(("features", "flat positions " + _listing(incident.features)))
    rows.append(("action", esc(action_text(incident))))
    rows.append(("diagnosed in", f"{incident.diagnosis_seconds:.2f} s"))
    where_html = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    fix = ""
    if incident.fixes:
        fix = f'<div class="fix"><h4>Fix first</h4><p>{prose(incident.fixes[0])}</p></div>'
    evidence = "".join(f"<li>{prose(e)}</li>" for e in facts(incident))
    more = "".join(f"<li>{prose(f)}</li>" for f in incident.fixes[1:])
    alternatives = ", ".join(
        f"{esc(a.root_cause)} ({a.confidence:.0%})" for a in incident.alternatives
    )
    return (
        '<article class="card">'
        f'<div class="what">{esc(SYMPTOM.get(incident.symptom, incident.symptom)).capitalize()}'
        f" at {esc(where(incident.step, incident.epoch, incident.batch))}</div>"
        f'<div class="cause">{esc(incident.root_cause)}'
        f'<span class="conf">{incident.confidence:.0%} confidence</span></div>'
        f'<p class="meaning">{esc(CAUSE.get(incident.root_cause, ""))}</p>'
        f"{fix}<dl class='where'>{where_html}</dl>"
        + (f"<h4>Evidence</h4><ul>{evidence}</ul>" if evidence else "")
        + (f"<h4>Other fixes</h4><ul>{more}</ul>" if more else "")
        + (f"<h4>Also possible</h4><p>{alternatives}</p>" if alternatives else "")
        + "</article>"
    )


def _cards(run: Run) -> str:
    if not run.incidents:
        return (
            '<article class="card ok"><div class="cause" style="color:#15803d">'
            "no non-finite value</div>"
            f'<p class="meaning">{run.steps} steps checked: every loss, gradient and update '
            "was finite.</p></article>"
        )
    out = [incident_card(run.incidents[0])]
    for incident in run.incidents[1:MAX_CARDS]:
        out.append(
            f"<details><summary>{esc(where(incident.step, incident.epoch, incident.batch))}: "
            f"{esc(incident.root_cause)} ({esc(incident.action)})</summary>"
            f"{incident_card(incident)}</details>"
        )
    if len(run.incidents) > MAX_CARDS:
        out.append(f"<p class='note'>{len(run.incidents) - MAX_CARDS} more incidents.</p>")
    return "".join(out)


# -- plots ------------------------------------------------------------------------------------


def _incident_marks(run: Run) -> list[tuple[int, str]]:
    return [(i.step, f"step {i.step}: {i.root_cause}") for i in run.incidents]


def _end(series: dict[str, Any], run: Run) -> int:
    steps = series.get("step") or [0]
    return max(int(steps[-1]) + int(series.get("bucket", 1)), run.steps, 1)


def _centres(series: dict[str, Any]) -> list[float]:
    half = (int(series.get("bucket", 1)) - 1) / 2
    return [s + half for s in series.get("step", [])]


def _caption(series: dict[str, Any], what: str) -> str:
    bucket = int(series.get("bucket", 1))
    per = "per step" if bucket == 1 else f"per bucket of {bucket} steps"
    return f"<figcaption>{esc(what)}, {per}.</figcaption>"


def loss_chart(run: Run, series: dict[str, Any]) -> str:
    h, top, bottom = 250, 14, 214
    xs = _centres(series)
    x = ch.step_scale(_end(series, run))
    low, high, mean = series["loss_min"], series["loss_max"], series["loss_mean"]
    y = ch.value_scale(low + high, bottom, top, log_ok=True)
    bad = []
    for s, count in zip(xs, series.get("bad", []), strict=False):
        if count:
            bad.append(
                f'<rect x="{x(s) - 1.5:.1f}" y="{bottom - 8}" width="3" height="8" '
                f'fill="{ch.RED}"><title>{count} flagged step(s) near step {int(s)}</title></rect>'
            )
    body = (
        ch.y_axis(y, "loss")
        + ch.x_axis(x, top, bottom)
        + ch.band(xs, low, high, x, y, ch.BAND)
        + ch.line(xs, mean, x, y, ch.BLUE, title="mean loss")
        + "".join(bad)
        + ch.markers(_incident_marks(run), x, top, bottom)
    )
    return (
        f"<figure><h3>Loss</h3>{ch.svg(h, body, 'loss curve')}"
        + _caption(series, "Line: mean loss; band: min to max; red ticks: flagged steps")
        + "</figure>"
    )


def _heat_rows(series: dict[str, Any]) -> list[int]:
    """Variables to show: all if few, else the non-finite ones and the largest norms."""
    names = series["variables"]
    if len(names) <= MAX_HEAT_ROWS:
        return list(range(len(names)))
    peaks = [max((v for v in col if v is not None), default=0.0) for col in series["grad_norms"]]
    order = sorted(range(len(names)), key=lambda i: (not series["grad_nonfinite"][i], -peaks[i]))
    return sorted(order[:MAX_HEAT_ROWS])


def gradient_chart(run: Run, series: dict[str, Any]) -> str:
    xs = _centres(series)
    end = _end(series, run)
    x = ch.step_scale(end)
    top, bottom = 14, 150
    y = ch.value_scale(series["grad_norm"], bottom, top, log_ok=True)
    overall = (
        ch.y_axis(y, "global norm")
        + ch.x_axis(x, top, bottom)
        + ch.line(xs, series["grad_norm"], x, y, ch.PURPLE, title="global gradient norm")
        + ch.markers(_incident_marks(run), x, top, bottom)
    )
    out = [
        "<figure><h3>Gradient norms</h3>",
        ch.svg(186, overall, "global gradient norm"),
        _caption(series, "Global gradient norm (largest)"),
    ]
    rows = _heat_rows(series)
    names = series["variables"]
    if rows and series["step"]:
        size = len(series["step"])
        values = np.full((len(rows), size), np.nan)
        bad = np.zeros((len(rows), size), bool)
        for r, i in enumerate(rows):
            values[r] = [np.nan if v is None else v for v in series["grad_norms"][i]][:size]
            bad[r, [b for b in series["grad_nonfinite"][i] if b < size]] = True
        image, lo, hi = ch.heat_image(values, bad)
        rh = max(14, min(28, 168 // len(rows)))  # few variables get taller rows
        top = 22
        height = top + rh * len(rows)
        x0 = x(series["step"][0])
        x1 = x(series["step"][-1] + int(series.get("bucket", 1)))
        labels = "".join(
            f'<text x="{ch.LEFT - 6}" y="{top + rh * r + rh - 3}" class="end">'
            f"{esc(ch.short(_label(names[i])))}<title>{esc(names[i])}</title></text>"
            for r, i in enumerate(rows)
        )
        body = (
            ch.colour_key(lo, hi, ch.LEFT + 60, 4)
            + f'<image x="{x0:.1f}" y="{top}" width="{x1 - x0:.1f}" height="{rh * len(rows)}" '
            f'preserveAspectRatio="none" style="image-rendering:pixelated" '
            f'href="{ch.data_uri(image)}"/>'
            + labels
            + ch.markers(_incident_marks(run), x, top, height, label=False)
            + ch.x_axis(x, height, height)
        )
        shown = "" if len(rows) == len(names) else f" ({len(rows)} of {len(names)} shown)"
        out.append(ch.svg(height + 34, body, "gradient norm heat map"))
        out.append(
            _caption(series, f"Largest gradient norm of each variable{shown}, log colour scale")
        )
    out.append("</figure>")
    return "".join(out)


def _label(name: str) -> str:
    """A variable's name without the model's prefix: ``model/dense/kernel`` -> ``dense/kernel``."""
    parts = name.split("/")
    return "/".join(parts[-2:]) if len(parts) > 2 else name


def ratio_chart(run: Run, series: dict[str, Any]) -> str:
    steps = series.get("sample_step") or []
    ratios = series.get("update_ratios") or []
    if not steps or not ratios:
        return ""
    names = series["variables"]
    peaks = [max((v for v in col if v is not None), default=0.0) for col in ratios]
    shown = sorted(sorted(range(len(ratios)), key=lambda i: -peaks[i])[:MAX_RATIO_LINES])
    top, bottom = 14, 190
    x = ch.step_scale(_end(series, run))
    values = [v for i in shown for v in ratios[i] if v is not None and v > 0]
    y = ch.value_scale([*values, 3e-4], bottom, top, log_ok=True)  # 1e-3 above the floor
    lines = []
    legend = []
    for k, i in enumerate(shown):
        colour = ch.PALETTE[k % len(ch.PALETTE)]
        ys = [v if v is not None and v > 0 else None for v in ratios[i]]
        lines.append(ch.line(steps, ys, x, y, colour, 1.4, title=names[i]))
        legend.append(
            f'<span><i style="background:{colour}"></i>{esc(ch.short(_label(names[i]), 40))}</span>'
        )
    ref = y(1e-3)
    body = (
        ch.y_axis(y, "update / weight")
        + ch.x_axis(x, top, bottom)
        + f'<line x1="{ch.LEFT}" y1="{ref:.1f}" x2="{ch.LEFT + ch.PLOT}" y2="{ref:.1f}" '
        f'stroke="{ch.GREY}" stroke-dasharray="3 3"/>'
        f'<text x="{ch.LEFT + ch.PLOT - 4}" y="{ref - 4:.1f}" class="end">1e-3: a typical '
        "healthy ratio</text>" + "".join(lines) + ch.markers(_incident_marks(run), x, top, bottom)
    )
    more = "" if len(shown) == len(ratios) else f" ({len(shown)} largest of {len(ratios)})"
    return (
        f"<figure><h3>Update / weight ratios</h3>{ch.svg(226, body, 'update ratios')}"
        f"<div class='legend'>{''.join(legend)}</div>"
        f"<figcaption>Norm of each variable's update over its norm on sampled steps{more}"
        "; far above 1e-3 the steps are too large, far below the variable barely learns."
        "</figcaption></figure>"
    )


def _symlog(value: float) -> float:
    return math.copysign(math.log10(1 + abs(value)), value)


def activation_chart(incident: Incident, ranges: list[Any]) -> str:
    """Each layer's output range in the replay, on a signed log axis with ±65504 drawn."""
    ranges = ranges[:MAX_LAYERS]
    finite = [abs(v) for r in ranges for v in (r.min, r.max, r.peak) if math.isfinite(v)]
    edge = max(_symlog(max(finite, default=1.0)), _symlog(ch.FLOAT16_MAX)) * 1.08
    rh, top = 18, 24
    height = top + rh * len(ranges)
    x = ch.Scale(-edge, edge, ch.LEFT, ch.LEFT + ch.PLOT)
    out = []
    for power in range(0, int(edge) + 1, 2 if edge > 8 else 1):
        for sign in (-1, 1) if power else (1,):
            value = sign * 10.0**power if power else 0.0
            px = x(_symlog(value))
            out.append(
                f'<line x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{height}" class="grid"/>'
                f'<text x="{px:.1f}" y="{height + 14}" class="tick mid">{fmt(value)}</text>'
            )
    for sign in (-1, 1):
        px = x(_symlog(sign * ch.FLOAT16_MAX))
        out.append(
            f'<line x1="{px:.1f}" y1="{top - 8}" x2="{px:.1f}" y2="{height}" class="limit"/>'
        )
    px = x(_symlog(ch.FLOAT16_MAX))
    out.append(f'<text x="{px - 4:.1f}" y="{top - 10}" class="flag end">float16 max 65504</text>')
    for r, item in enumerate(ranges):
        cy = top + rh * r
        broken = not all(math.isfinite(v) for v in (item.min, item.max, item.peak))
        over = math.isfinite(item.peak) and item.peak > ch.FLOAT16_MAX
        colour = ch.RED if broken else ch.AMBER if over else ch.BLUE
        lo = x(_symlog(item.min)) if math.isfinite(item.min) else ch.LEFT
        hi = x(_symlog(item.max)) if math.isfinite(item.max) else ch.LEFT + ch.PLOT
        tip = f"{item.layer}: min {fmt(item.min)}, max {fmt(item.max)}, peak |x| {fmt(item.peak)}"
        out.append(
            f'<rect x="{min(lo, hi):.1f}" y="{cy + 4}" width="{max(abs(hi - lo), 2):.1f}" '
            f'height="{rh - 8}" rx="2" fill="{colour}"><title>{esc(tip)}</title></rect>'
            f'<text x="{ch.LEFT - 6}" y="{cy + rh - 5}" class="end">'
            f"{esc(ch.short(item.layer))}<title>{esc(item.layer)}</title></text>"
        )
        if broken or over:
            right = max(lo, hi)
            inside = right > ch.LEFT + ch.PLOT - 40  # no room past the bar: write on it
            out.append(
                f'<text x="{right - 4 if inside else right + 4:.1f}" y="{cy + rh - 5}" '
                f'class="flag{" end" if inside else ""}"'
                + (' style="fill:#fff"' if inside else "")
                + f">peak {esc(fmt(item.peak))}</text>"
            )
    return (
        f"<figure><h3>Activation ranges at step {incident.step}</h3>"
        + ch.svg(height + 22, "".join(out), "activation ranges")
        + "<figcaption>Each layer's output, min to max, in the replay of the step (signed log "
        "axis); red: non-finite, amber: beyond the float16 limit.</figcaption></figure>"
    )


def warning_chart(run: Run, series: dict[str, Any] | None) -> str:
    if not run.warnings:
        return ""
    groups = group_warnings(run.warnings)
    codes = list(dict.fromkeys(w.code for w in run.warnings))[:12]
    rh, top = 18, 8
    height = top + rh * len(codes)
    end = _end(series, run) if series else max([run.steps, *(w.step + 1 for w in run.warnings)])
    x = ch.step_scale(end)
    out = []
    for r, code in enumerate(codes):
        cy = top + rh * r + rh / 2
        out.append(
            f'<line x1="{ch.LEFT}" y1="{cy}" x2="{ch.LEFT + ch.PLOT}" y2="{cy}" class="grid"/>'
            f'<text x="{ch.LEFT - 6}" y="{cy + 4}" class="end">{esc(code)}</text>'
        )
    seen: set[tuple[str, int]] = set()
    for w in run.warnings:
        if w.code not in codes:
            continue
        px = round(x(w.step))
        if (w.code, px) in seen:
            continue  # one dot per pixel and code keeps a chatty monitor's page small
        seen.add((w.code, px))
        cy = top + rh * codes.index(w.code) + rh / 2
        colour = ch.SEVERITY_COLOUR.get(w.severity, ch.GREY)
        out.append(
            f'<circle cx="{px}" cy="{cy}" r="4.5" fill="{colour}"><title>step {w.step}: '
            f"{esc(w.message)}</title></circle>"
        )
    out.append(ch.markers(_incident_marks(run), x, top, height, label=False))
    out.append(ch.x_axis(x, height, height))
    table = "".join(
        f"<tr><td class='sev-{esc(g.severity)}'>{esc(g.severity)}</td><td>{esc(g.code)}</td>"
        f"<td>{esc(g.layer or '')}</td><td>{esc(steps_text(g))}</td><td>{prose(g.message)}</td>"
        "</tr>"
        for g in groups
    )
    return (
        f"<figure><h3>Warnings</h3>{ch.svg(height + 34, ''.join(out), 'warnings timeline')}"
        "<table><tr><th>severity</th><th>code</th><th>layer</th><th>when</th><th>first message"
        f"</th></tr>{table}</table></figure>"
    )


# -- the page ---------------------------------------------------------------------------------


def _run_section(index: int, run: Run, series: dict[str, Any] | None) -> str:
    bad = bool(run.incidents)
    losses = ", ".join(fmt(v) if v is not None else "nan" for v in run.epoch_losses)
    head = (
        f'<section class="run" id="run{index}"><h2>{esc(run.model or "model")} '
        f'<span class="pill{" bad" if bad else ""}">{esc(run.status)}</span></h2>'
        f'<p class="meta">{esc(run.kind)} &middot; {run.steps} steps &middot; policy '
        f"{esc(run.policy)}" + (f" &middot; epoch losses {esc(losses)}" if losses else "") + "</p>"
    )
    parts = [head, _cards(run)]
    plotted = series is not None and len(series.get("step") or []) >= 2
    if plotted:
        parts.append(loss_chart(run, series))
        parts.append(gradient_chart(run, series))
        parts.append(ratio_chart(run, series))
    for incident in run.incidents[:MAX_CARDS]:
        ranges = activations(series, incident.step)
        if ranges:
            parts.append(activation_chart(incident, ranges))
    parts.append(warning_chart(run, series))
    if not plotted:
        why = "one step is too few to plot over" if series else "no per-step history was kept"
        parts.append(f"<p class='note'>No plots for this run: {why}.</p>")
    parts.append("</section>")
    return "".join(parts)


def _glance(index: int, run: Run) -> str:
    name = esc(run.model or "model")
    if not run.incidents:
        text = f"{name}: {run.steps} steps, no non-finite value"
        return f'<li><a href="#run{index}">{text}</a></li>'
    first = run.incidents[0]
    fix = f" &mdash; fix: {prose(first.fixes[0])}" if first.fixes else ""
    return (
        f'<li class="bad"><a href="#run{index}"><b>{name}</b>: {esc(run.status)} at step '
        f"{first.step}: <b>{esc(first.root_cause)}</b></a>{fix}</li>"
    )


def render_html(report: Report, series: Sequence[dict[str, Any] | None] | None = None) -> str:
    """The page of ``report``; ``series``: per-run plot data, by default each run's own."""
    runs = report.runs
    per_run = list(series) if series is not None else [r.series for r in runs]
    per_run += [None] * (len(runs) - len(per_run))
    # Runs with incidents first: their cards are what the reader came for.
    order = sorted(range(len(runs)), key=lambda i: not runs[i].incidents)
    glance = "".join(_glance(i, runs[i]) for i in order)
    sections = "".join(_run_section(i, runs[i], per_run[i]) for i in order)
    body = (
        "<h1>nanguard report</h1>"
        f"<p class='sub'>nanguard {esc(package_version())} &middot; {len(runs)} guarded "
        "run(s)</p>"
        + (f"<ul class='glance'>{glance}</ul>" if len(runs) > 1 else "")
        + (sections or "<p>No training run was guarded.</p>")
    )
    return page("nanguard report", body)


def save_html(report: Report, path: str | Path, series: Any = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report, series), encoding="utf-8")
    return path


# -- audits: per-feature histograms -----------------------------------------------------------


@dataclass
class FeatureHistogram:
    """One feature's histogram for the audit page: ``len(edges) == len(counts) + 1``;
    ``nonfinite``: values left out of the bins; ``note``: one line shown under it."""

    name: str
    edges: list[float]
    counts: list[int]
    nonfinite: int = 0
    note: str = ""

    @classmethod
    def of(cls, name: str, values: Any, bins: int = 30, note: str = "") -> FeatureHistogram:
        data = np.asarray(values, np.float64).ravel()
        finite = data[np.isfinite(data)]
        counts, edges = np.histogram(finite, bins=bins) if finite.size else ([], [])
        return cls(
            name,
            list(map(float, edges)),
            list(map(int, counts)),
            int(data.size - finite.size),
            note,
        )


class HistogramLike(Protocol):
    """What :func:`histograms_html` reads: ``nanguard.audit.report.Histogram`` fits, and
    :class:`FeatureHistogram` adds ``nonfinite`` and ``note``."""

    name: str
    edges: list[float]
    counts: list[int]


def histograms_html(histograms: Sequence[HistogramLike], title: str = "Features") -> str:
    """A section of small histograms, one per feature (names and notes escaped here).

    Wrap it with :func:`page` for a standalone file, e.g.
    ``page("nanguard audit", findings_html + histograms_html(report.histograms))``.
    """
    figures = []
    for h in histograms:
        notes = []
        nonfinite, note = getattr(h, "nonfinite", 0), getattr(h, "note", "")
        if nonfinite:
            notes.append(f"<span class='sev-critical'>{int(nonfinite)} non-finite</span>")
        if note:
            notes.append(esc(note))
        figures.append(
            f"<figure><h3>{esc(ch.short(h.name, 50))}</h3>"
            f"{ch.histogram_svg(h.edges, h.counts, h.name)}"
            + (f"<div class='note'>{' &middot; '.join(notes)}</div>" if notes else "")
            + "</figure>"
        )
    return (
        f"<section class='run'><h2>{esc(title)}</h2>"
        f"<div class='hists'>{''.join(figures)}</div></section>"
    )
