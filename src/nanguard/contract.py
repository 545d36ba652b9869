"""The run report of CONTRACT.md §3 (schema 1) and its codes.

Other programs parse this JSON, so the field names, their order and the codes below mirror
``shared/CONTRACT.md`` exactly; anything else in the package may change freely. Kept free of
TensorFlow so that ``import nanguard`` and ``nanguard --help`` stay fast.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

SCHEMA = 1

POLICIES = ("stop", "skip", "heal")
RUN_KINDS = ("fit", "custom_loop")
RUN_STATUSES = ("completed", "stopped", "healed", "crashed")
SYMPTOMS = ("nonfinite_loss", "nonfinite_gradient", "nonfinite_weights", "error")
ACTIONS = ("stopped", "skipped", "quarantined", "rolled_back", "lr_reduced", "clipped", "none")

ROOT_CAUSES = (
    "input_nonfinite",
    "target_nonfinite",
    "label_out_of_range",
    "invalid_target",
    "input_outlier",
    "unscaled_input",
    "output_loss_mismatch",
    "unstable_loss",
    "unstable_op",
    "unstable_gradient",
    "exploding_gradients",
    "learning_rate_too_high",
    "float16_overflow",
    "bad_initialization",
    "unknown",
)

WARNING_CODES = (
    "exploding_gradients",
    "vanishing_gradients",
    "dead_relu",
    "saturated_activation",
    "learning_rate_too_high",
    "loss_divergence",
    "unscaled_input",
    "input_outlier",
    "output_loss_mismatch",
    "float16_overflow_risk",
    "label_out_of_range",
    "input_nonfinite",
    "target_nonfinite",
    "invalid_target",
)


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nanguard")
    except PackageNotFoundError:  # running from a source tree
        return "0+unknown"


@dataclass
class Alternative:
    root_cause: str
    confidence: float


@dataclass
class Incident:
    step: int
    epoch: int | None
    batch: int | None
    symptom: str
    root_cause: str = "unknown"
    confidence: float = 0.0
    alternatives: list[Alternative] = field(default_factory=list)
    layer: str | None = None
    op: str | None = None
    samples: list[int] = field(default_factory=list)
    dataset_indices: list[int] | None = None
    features: list[int] | None = None
    evidence: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)
    action: str = "none"
    diagnosis_seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.symptom not in SYMPTOMS:
            raise ValueError(f"unknown symptom {self.symptom!r}")
        if self.root_cause not in ROOT_CAUSES:
            raise ValueError(f"unknown root cause {self.root_cause!r}")
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}")


@dataclass
class Warning:
    step: int
    code: str
    layer: str | None
    severity: str
    message: str


@dataclass
class Run:
    kind: str
    model: str
    policy: str
    status: str = "completed"
    steps: int = 0
    epoch_losses: list[float] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    warnings: list[Warning] = field(default_factory=list)
    # Not part of the JSON: the downsampled per-step history for plots (``render/series.py``).
    series: dict[str, Any] | None = field(default=None, repr=False, compare=False)


class JsonDocument:
    """A report written as strict JSON (run reports, audit reports): subclasses give
    ``to_dict``."""

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def save_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path


@dataclass
class Report(JsonDocument):
    """Everything nanguard saw in one process: one :class:`Run` per guarded training loop."""

    runs: list[Run] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "nanguard": package_version(),
            "runs": [_clean(_json_fields(run)) for run in self.runs],
        }

    def save_html(self, path: str | Path) -> Path:
        from nanguard.render.html import save_html

        return save_html(self, path)


def _json_fields(run: Run) -> dict[str, Any]:
    """The run's fields of CONTRACT §3, in order: everything but ``series``."""
    out = asdict(replace(run, series=None))
    del out["series"]
    return out


def _clean(value: Any) -> Any:
    """Make a value strict JSON: non-finite floats (a NaN epoch loss) become null."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value
