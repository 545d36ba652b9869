"""The audit report of CONTRACT.md §4 (schema 1): findings and per-feature statistics.

``to_dict`` gives exactly the contract's fields in the contract's order; what only the HTML page
and the terminal need (histograms, notes, timing) stays in attributes outside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nanguard.contract import JsonDocument, _clean

SCHEMA = 1
FINDING_CODES = (
    "nonfinite",
    "constant_feature",
    "outlier",
    "unscaled",
    "label_out_of_range",
    "label_nonfinite",
    "class_imbalance",
    "corrupt_file",
    "blank_sample",
    "duplicate",
)
SEVERITIES = ("info", "warning", "error")


@dataclass
class Finding:
    code: str
    severity: str
    feature: int | str | None
    indices: list[int] | list[str]
    count: int
    message: str

    def __post_init__(self) -> None:
        if self.code not in FINDING_CODES:
            raise ValueError(f"unknown finding code {self.code!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "feature": self.feature,
            "indices": list(self.indices),
            "count": self.count,
            "message": self.message,
        }


@dataclass
class FeatureSummary:
    name: str
    count: int
    nonfinite: int
    min: float | None
    max: float | None
    mean: float | None
    std: float | None

    def to_dict(self) -> dict[str, Any]:
        return _clean(
            {
                "name": self.name,
                "count": self.count,
                "nonfinite": self.nonfinite,
                "min": self.min,
                "max": self.max,
                "mean": self.mean,
                "std": self.std,
            }
        )


@dataclass
class Histogram:
    """Counts of a feature's sampled values in equal bins (for the HTML page only)."""

    name: str
    edges: list[float]
    counts: list[int]


@dataclass
class AuditReport(JsonDocument):
    """What ``nanguard audit`` found. Errors are what would break training; warnings what
    often does; info what is worth knowing."""

    rows: int
    findings: list[Finding] = field(default_factory=list)
    features: list[FeatureSummary] = field(default_factory=list)
    histograms: list[Histogram] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def exit_code(self) -> int:
        """CONTRACT §1: 1 when a finding has severity ``error``, else 0."""
        return 1 if self.errors else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "rows": self.rows,
            "findings": [f.to_dict() for f in self.findings],
            "features": [f.to_dict() for f in self.features],
        }

    def save_html(self, path: str | Path) -> Path:
        from nanguard.audit.render import render_html

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_html(self), encoding="utf-8")
        return path
