"""Terminal output: an incident card read in five seconds, and one summary line per run.

The card answers, top to bottom: what happened and when, what caused it, where (layer, op,
samples), the evidence, and what to do first.
"""

from __future__ import annotations

import sys
from typing import IO

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from nanguard.contract import Incident, Run
from nanguard.render.digest import group_warnings, steps_text
from nanguard.render.words import SYMPTOM, action_text, facts, where

MAX_WARNING_LINES = 10
_SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "dim"}


def _console(file: IO[str] | None) -> Console:
    return Console(file=file or sys.stderr, highlight=False, soft_wrap=False)


def incident_panel(run: Run, incident: Incident) -> Panel:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    grid.add_row(
        "cause", f"[bold red]{incident.root_cause}[/] (confidence {incident.confidence:.0%})"
    )
    if incident.layer:
        grid.add_row(
            "layer", escape(incident.layer) + (f", op {escape(incident.op)}" if incident.op else "")
        )
    elif incident.op:
        grid.add_row("op", escape(incident.op))
    if incident.samples:
        shown = ", ".join(map(str, incident.samples[:10])) + (
            " ..." if len(incident.samples) > 10 else ""
        )
        grid.add_row("samples", f"batch positions {shown}")
    if incident.dataset_indices:
        grid.add_row("data rows", ", ".join(map(str, incident.dataset_indices[:10])))
    for i, fact in enumerate(facts(incident)[:4]):
        grid.add_row("evidence" if i == 0 else "", escape(fact))
    if incident.fixes:
        grid.add_row("[green]fix first[/]", f"[green]{escape(incident.fixes[0])}[/]")
    for fix in incident.fixes[1:3]:
        grid.add_row("", escape(fix))
    grid.add_row("action", escape(action_text(incident)))
    place = where(incident.step, incident.epoch, incident.batch)
    title = f"nanguard: {SYMPTOM[incident.symptom]} at {place} of {escape(run.model)}"
    return Panel(grid, title=title, title_align="left", border_style="red")


def print_incident(run: Run, incident: Incident, file: IO[str] | None = None) -> None:
    _console(file).print(incident_panel(run, incident))


def summary_line(run: Run) -> str:
    n = len(run.warnings)
    warned = f"; {n} warning{'s' if n != 1 else ''}" if n else ""
    if not run.incidents:
        return f"nanguard: {run.model}: {run.steps} steps, no non-finite value ({run.kind}){warned}"
    first = run.incidents[0]
    return (
        f"nanguard: {run.model}: {run.status} after {run.steps} steps; "
        f"{len(run.incidents)} incident(s), first at step {first.step}: {first.root_cause}" + warned
    )


def warning_lines(run: Run) -> list[str]:
    """One line per kind of warning (code and layer), however often it was raised."""
    groups = group_warnings(run.warnings)
    lines = [
        f"[{_SEVERITY_STYLE.get(g.severity, '')}]{escape(g.severity)}[/] {escape(g.code)}"
        + (f" in {escape(g.layer)}" if g.layer else "")
        + f" ({steps_text(g)}): {escape(g.message)}"
        for g in groups[:MAX_WARNING_LINES]
    ]
    if len(groups) > MAX_WARNING_LINES:
        lines.append(f"... and {len(groups) - MAX_WARNING_LINES} more kinds of warning")
    return lines


def print_run_summary(run: Run, file: IO[str] | None = None, *, warnings: bool = True) -> None:
    """The summary line, then (``warnings``) the run's warnings, one line each: left out where
    each was already printed as it appeared, so a healthy run ends on one line."""
    console = _console(file)
    console.print(escape(summary_line(run)), soft_wrap=True)
    for line in warning_lines(run) if warnings else []:
        console.print("  " + line, soft_wrap=True)
