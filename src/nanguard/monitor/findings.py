"""What a check finds, and the per-run board that turns findings into CONTRACT warnings.

A finding is re-raised at every check while its condition holds; the board keeps one
:class:`~nanguard.contract.Warning` per (code, layer): the step it was first seen, the worst
severity so far and the latest message. The terminal gets one line when a warning first appears
and one more only if its severity rises, for at most ``PRINTED_PER_CODE`` layers of one code (a
deep stack with the same fault in every layer gets one more line saying the rest are in the
report), so a long run cannot flood it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import IO

from nanguard.contract import WARNING_CODES, Run, Warning

SEVERITIES = ("info", "warning", "critical")
PRINTED_PER_CODE = 3


@dataclass
class Finding:
    code: str
    severity: str
    message: str
    layer: str | None = None

    def __post_init__(self) -> None:
        if self.code not in WARNING_CODES:
            raise ValueError(f"unknown warning code {self.code!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")


def rank(severity: str) -> int:
    return SEVERITIES.index(severity)


class WarningBoard:
    """Deduplicated warnings of one run, written into ``run.warnings`` as they evolve."""

    def __init__(self, run: Run, *, echo: bool, file: IO[str] | None = None) -> None:
        self.run = run
        self.echo = echo
        self.file = file
        self.entries: dict[tuple[str, str | None], Warning] = {}
        self.printed: dict[str, set[str | None]] = {}  # code -> layers given a terminal line
        for warning in run.warnings:  # e.g. pre-flight findings recorded before the run began
            self.entries[(warning.code, warning.layer)] = warning

    def add(self, step: int, finding: Finding) -> Warning:
        key = (finding.code, finding.layer)
        warning = self.entries.get(key)
        if warning is None:
            warning = Warning(step, finding.code, finding.layer, finding.severity, finding.message)
            self.entries[key] = warning
            self.run.warnings.append(warning)
            self._print(warning)
            return warning
        worse = rank(finding.severity) > rank(warning.severity)
        if rank(finding.severity) >= rank(warning.severity):
            warning.message = finding.message
        if worse:
            warning.severity = finding.severity
            self._print(warning)
        return warning

    def _print(self, warning: Warning) -> None:
        if not self.echo:
            return
        layers = self.printed.setdefault(warning.code, set())
        if warning.layer not in layers and len(layers) >= PRINTED_PER_CODE:
            if len(layers) == PRINTED_PER_CODE:
                layers.add("...")  # said once
                print(
                    f"nanguard: more {warning.code} warnings for other layers of "
                    f"{self.run.model} are in the report",
                    file=self.file or sys.stderr,
                    flush=True,
                )
            return
        layers.add(warning.layer)
        print(warning_line(self.run, warning), file=self.file or sys.stderr, flush=True)


def warning_line(run: Run, warning: Warning) -> str:
    where = f" in {warning.layer}" if warning.layer else ""
    return (
        f"nanguard: {warning.severity} at step {warning.step} of {run.model}: "
        f"{warning.code}{where}: {warning.message}"
    )
