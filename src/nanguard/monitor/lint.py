"""``nanguard.lint(model, data)`` and ``nanguard lint script.py``: the pre-flight checks alone.

The same checks ``Guard(preflight=True)`` runs when training begins, without training: for a
model and data in hand, or for a script stopped at its first ``fit`` (or first optimizer step of
a hand-written loop).
"""

from __future__ import annotations

import sys
from typing import Any

from nanguard.contract import Warning
from nanguard.monitor.findings import rank


def lint(
    model: Any, data: Any = None, y: Any = None, *, batch_size: int | None = None
) -> list[Warning]:
    """Pre-flight warnings for a compiled ``model`` and its training data.

    ``data``: what ``fit`` would get as ``x`` (arrays, a dict of arrays, a ``tf.data.Dataset``
    or ``keras.utils.PyDataset`` of ``(x, y)`` batches); ``y``: the targets, for arrays. Only the
    first batch is read. Returns CONTRACT warnings at step 0, worst first.
    """
    from nanguard.monitor.batch import first_batch
    from nanguard.monitor.preflight import check

    batch = first_batch(data, y, batch_size)
    found = [Warning(0, f.code, f.layer, f.severity, f.message) for f in check(model, batch)]
    return sorted(found, key=lambda w: -rank(w.severity))


def lint_script(script: str, args: list[str]) -> int:
    """Exit code: 0 when nothing of severity warning or critical is found, 1 otherwise."""
    from nanguard.runscript import UsageError, script_path

    path = script_path(script, "nanguard lint")
    from nanguard.monitor.intercept import print_script_error, run_until_training

    outcome = run_until_training(path, args)
    reached = outcome.reached
    if reached is None:
        if outcome.error is not None:
            print_script_error(outcome.error, "nanguard lint", script)
        raise UsageError(f"nanguard lint: {script}: ended without training; nothing to check")
    if reached.model is None:
        raise UsageError(f"nanguard lint: {script}: found no Keras model in its training loop")
    warnings = lint(reached.model, reached.x, reached.y, batch_size=reached.batch_size)
    where = "fit" if reached.kind == "fit" else "the first optimizer step"
    for w in warnings:
        layer = f" in {w.layer}" if w.layer else ""
        print(f"{w.severity:8} {w.code}{layer}: {w.message}")
    serious = [w for w in warnings if w.severity in ("warning", "critical")]
    data = "" if reached.x is not None else " (no data seen: model checks only)"
    print(
        f"nanguard lint: {reached.model.name} at {where}{data}: "
        + (f"{len(serious)} problem(s)" if serious else "no problems found"),
        file=sys.stderr,
    )
    return 1 if serious else 0
