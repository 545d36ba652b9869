"""``Guard(audit=True)``: audit the first batches of ``fit``'s data when training begins.

Findings that explain NaNs become run warnings with the CONTRACT codes; the audit never stops
or breaks training (any failure of its own is one line on stderr).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from nanguard.audit.memory import is_several_inputs
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
    if is_several_inputs(value):
        return [_head(v, rows) for v in value]
    if hasattr(value, "iloc"):
        return value.iloc[:rows]
    return np.asarray(value[:rows])


def in_memory(x: Any) -> bool:
    """Arrays, a DataFrame, or several of them: data that can be read again at no cost to
    training (unlike a generator or a ``PyDataset``)."""
    if isinstance(x, dict) or hasattr(x, "shape") or hasattr(x, "iloc"):
        return True
    return is_several_inputs(x)


def per_output(y: Any) -> list[tuple[Any, Any]]:
    """(output, its targets) of each output; one ``(None, y)`` for a single output."""
    if isinstance(y, dict):
        return list(y.items())
    if is_several_inputs(y):
        return list(enumerate(y))
    return [(None, y)]


def audit_by_output(model: Any, x: Any, y: Any) -> list[tuple[Any, Any]]:
    """(output or None, audit report) per output: inputs with the first output's targets, then
    only the label findings of each further output's targets (the inputs are read once)."""
    from nanguard.audit.api import audit

    out = []
    for i, (output, target) in enumerate(per_output(y)):
        report = audit(x, target, num_classes=class_count(model) if output is None else None)
        if i:
            report.findings = [f for f in report.findings if f.code.startswith("label")]
        out.append((output, report))
    return out


def of_output(where: str, output: Any) -> str:
    """``where`` (ending in a colon or comma), naming the output whose targets were audited."""
    return where if output is None else f"{where[:-1]} (targets of output {output!r}){where[-1]}"


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
        if hasattr(x, "element_spec"):  # a tf.data.Dataset: its elements are batches
            from nanguard.audit.api import audit

            reports = [(None, audit(x.take(BATCHES), num_classes=class_count(model)))]
        elif in_memory(x):
            rows = BATCHES * (batch_size or 32)
            reports = audit_by_output(model, _head(x, rows), None if y is None else _head(y, rows))
        else:  # generators, PyDataset: reading ahead would consume them
            return []
    except Exception as exc:
        print(
            f"nanguard: the audit of the first batches failed ({type(exc).__name__}: {exc}); "
            "training goes on",
            file=sys.stderr,
        )
        return []
    warnings = []
    for output, report in reports:
        report.findings = [f for f in report.findings if f.code in WARNING_CODE]
        where = of_output(f"audit of the first {report.rows} rows:", output)
        if verbose and report.findings:
            from nanguard.audit.render import print_report

            report.notes = []
            print(f"nanguard: {where}", file=sys.stderr)
            print_report(report, file=sys.stderr)
        warnings += as_warnings(report, 0, where)
    return warnings


def as_warnings(report: Any, step: int, where: str) -> list[Warning]:
    """The report's findings that explain NaNs, as run warnings at ``step``, each message led
    by ``where`` (what was audited)."""
    return [
        Warning(step, WARNING_CODE[f.code], None, SEVERITY[f.severity], f"{where} {f.message}")
        for f in report.findings
        if f.code in WARNING_CODE
    ]
