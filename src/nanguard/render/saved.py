"""``nanguard report run.json [--html OUT]``: read a saved run report back and show it again.

The JSON is CONTRACT §3; the plots need the per-step series that ``--report DIR`` writes to
``series.json`` beside it, used when present. Bad input is one line naming the file and what is
wrong with it, never a traceback.
"""

from __future__ import annotations

import json
import sys
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from nanguard.contract import SCHEMA, Alternative, Incident, Report, Run, Warning


class ReportError(ValueError):
    """The file is not a run report this version can read."""


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ReportError(f"{where} is not an object")
    known = {f.name for f in fields(cls) if f.name != "series"}
    missing = [f.name for f in fields(cls) if f.name not in data and _required(f)]
    if missing:
        raise ReportError(f"{where} has no {missing[0]!r}")
    try:
        return cls(**{k: v for k, v in data.items() if k in known})
    except (TypeError, ValueError) as exc:
        raise ReportError(f"{where}: {exc}") from None


def _required(f: Any) -> bool:
    return f.default is MISSING and f.default_factory is MISSING


def report_of(data: Any) -> Report:
    """A :class:`Report` from the parsed JSON of CONTRACT §3."""
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise ReportError("not a nanguard run report (no 'runs' list)")
    if data.get("schema") != SCHEMA:
        raise ReportError(f"report schema {data.get('schema')!r} is not {SCHEMA}")
    report = Report()
    for r, raw in enumerate(data["runs"]):
        run = _build(Run, raw, f"runs[{r}]")
        incidents = []
        for i, item in enumerate(run.incidents or []):
            incident = _build(Incident, item, f"runs[{r}].incidents[{i}]")
            incident.alternatives = [
                _build(Alternative, a, f"runs[{r}].incidents[{i}].alternatives[{k}]")
                for k, a in enumerate(incident.alternatives or [])
            ]
            incidents.append(incident)
        run.incidents = incidents
        run.warnings = [
            _build(Warning, w, f"runs[{r}].warnings[{k}]") for k, w in enumerate(run.warnings or [])
        ]
        run.epoch_losses = [float("nan") if v is None else v for v in run.epoch_losses or []]
        report.runs.append(run)
    return report


def load_report(path: str | Path) -> Report:
    """Read a saved run report; raises :class:`ReportError` with a one-line reason."""
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"{path}: no such file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ReportError(f"{path}: not a text file") from None
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON ({exc})") from None
    try:
        report = report_of(data)
    except ReportError as exc:
        raise ReportError(f"{path}: {exc}") from None
    series_path = path.with_name("series.json")
    if series_path.is_file():
        _attach_series(report, series_path)
    return report


def _attach_series(report: Report, path: Path) -> None:
    """Give each run its plot data from ``series.json``; a bad file only costs the plots."""
    from nanguard.render.series import load_series

    try:
        series = load_series(path)
    except (ValueError, OSError) as exc:
        print(f"nanguard report: {path}: ignored, no plots ({exc})", file=sys.stderr)
        return
    if len(series) != len(report.runs):
        print(
            f"nanguard report: {path}: ignored, no plots ({len(series)} runs there, "
            f"{len(report.runs)} in the report)",
            file=sys.stderr,
        )
        return
    for run, item in zip(report.runs, series, strict=True):
        run.series = item


def show_report(path: str, html: str | None = None) -> int:
    """Print the saved report's incident cards, summaries and warnings; write HTML if asked."""
    from nanguard.render.terminal import print_incident, print_run_summary

    report = load_report(path)
    for run in report.runs:
        for incident in run.incidents[:3]:
            print_incident(run, incident, file=sys.stdout)
        if len(run.incidents) > 3:
            print(f"... and {len(run.incidents) - 3} more incidents in {path}")
        print_run_summary(run, file=sys.stdout)
    if html:
        try:
            written = report.save_html(html)
        except OSError as exc:
            raise ReportError(f"cannot write {html} ({exc.strerror or exc})") from None
        print(f"nanguard report: wrote {written}", file=sys.stderr)
    return 0
