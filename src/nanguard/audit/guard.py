"""``Guard(audit=True)``: audit the first batches of ``fit``'s data when training begins.

Findings that explain NaNs become run warnings with the CONTRACT codes; the audit never stops
or breaks training (any failure of its own is one line on stderr).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from nanguard.contract import Warning

BATCHES = 8
WARNING_CODE = {
    "nonfinite": "input_nonfinite",
    "label_nonfinite": "target_nonfinite",
    "label_out_of_range": "label_out_of_range",
    "unscaled": "unscaled_input",
    "outlier": "input_outlier",
}
SEVERITY = {"error": "critical", "warning": "warning", "info": "info"}


def _head(value: Any, rows: int) -> Any:
    if isinstance(value, dict):
        return {k: _head(v, rows) for k, v in value.items()}
    if hasattr(value, "iloc"):
        return value.iloc[:rows]
    return np.asarray(value[:rows])


def class_count(model: Any) -> int | None:
    """The output units a sparse class label must stay below, when the loss takes labels."""
    from nanguard.diagnose.losses import sparse_label_loss

    if not sparse_label_loss(model)[0]:
        return None
    try:
        units = model.outputs[0].shape[-1]
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    return int(units) if units else None


def audit_first_batches(model: Any, data: Any = None, verbose: bool = True) -> list[Warning]:
    """Audit the first ``BATCHES`` batches given to the running ``fit``; run warnings back."""
    try:
        from nanguard.monitor.batch import fit_arguments

        args = fit_arguments() or {}
        x, y, batch_size = args.get("x"), args.get("y"), args.get("batch_size")
        if x is None:
            x = data
        if x is None:
            return []
        from nanguard.audit.api import audit

        if hasattr(x, "element_spec"):  # a tf.data.Dataset: its elements are batches
            report = audit(x.take(BATCHES), num_classes=class_count(model))
        elif isinstance(x, dict) or hasattr(x, "shape") or hasattr(x, "iloc"):
            rows = BATCHES * (batch_size or 32)
            report = audit(
                _head(x, rows),
                None if y is None else _head(y, rows),
                num_classes=class_count(model),
            )
        else:  # generators, PyDataset: reading ahead would consume them
            return []
    except Exception as exc:
        print(
            f"nanguard: the audit of the first batches failed ({type(exc).__name__}: {exc}); "
            "training goes on",
            file=sys.stderr,
        )
        return []
    findings = [f for f in report.findings if f.code in WARNING_CODE]
    if verbose and findings:
        from nanguard.audit.render import print_report

        report.findings, report.notes = findings, []
        print(f"nanguard: audit of the first {report.rows} rows:", file=sys.stderr)
        print_report(report, file=sys.stderr)
    return as_warnings(report, 0, f"audit of the first {report.rows} rows:")


def as_warnings(report: Any, step: int, where: str) -> list[Warning]:
    """The report's findings that explain NaNs, as run warnings at ``step``, each message led
    by ``where`` (what was audited)."""
    return [
        Warning(step, WARNING_CODE[f.code], None, SEVERITY[f.severity], f"{where} {f.message}")
        for f in report.findings
        if f.code in WARNING_CODE
    ]
