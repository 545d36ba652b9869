"""Why ``val_loss`` is NaN while training goes on: the validation data, looked at once.

One bad validation record (a NaN feature or target, a label past the output units, a target the
loss cannot take) makes Keras report ``val_loss: nan`` every epoch, while every training step
the guard checks stays finite: nothing is skipped, no incident is raised, and the user is left
with the question nanguard exists to answer. So at the first epoch whose validation loss is not
finite, the guard audits the validation data ``fit`` was given; if the audit finds no bad
record, it evaluates the model on that data batch by batch and names the rows whose own loss is
not finite, telling apart outputs that overflow (``input_outlier``) from finite outputs the loss
cannot take (``invalid_target``). The findings become run warnings (CONTRACT codes) whose
messages name validation rows and, under ``validation_split``, their rows in ``fit``'s data.

Generators and ``PyDataset`` validation data are not re-read (that would consume or re-augment
them), nor an endless ``tf.data`` pipeline without ``validation_steps``.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from nanguard.contract import Run, Warning
from nanguard.diagnose.nonfinite import listed, nonfinite_weights

ROWS_PER_BATCH = 256  # arrays are evaluated in slices this long when fit had no batch_size
EXTREME = 1e3  # an output this many times beyond every finite-loss row's has overflowed


def nonfinite_validation_loss(logs: Any) -> str | None:
    """The first validation loss in an epoch's ``logs`` that is not finite, as ``val_loss is
    nan``; None when there is none."""
    for key, value in (logs or {}).items():
        if key.startswith("val_") and key.endswith("loss"):
            try:
                number = float(np.asarray(value))
            except (TypeError, ValueError):
                continue
            if not np.isfinite(number):
                return f"{key} is {number}"
    return None


def explain(run: Run, model: Any, seen: str, step: int, echo: bool) -> None:
    """Add run warnings that say why the validation loss is not finite (``seen``: what
    :func:`nonfinite_validation_loss` said). Never raises: the guard must not break the run it
    watches."""
    try:
        warnings = _explain(model, seen, step)
    except Exception as exc:
        print(
            f"nanguard: could not look into why {seen} "
            f"({type(exc).__name__}: {exc}); training goes on",
            file=sys.stderr,
        )
        return
    run.warnings.extend(warnings)
    if echo:
        from nanguard.monitor.findings import warning_line

        for warning in warnings:
            print(warning_line(run, warning), file=sys.stderr, flush=True)


def _explain(model: Any, seen: str, step: int) -> list[Warning]:
    from nanguard.monitor.batch import fit_arguments

    args = fit_arguments() or {}
    x, y = args.get("val_x"), args.get("val_y")
    data = _readable(x, args.get("validation_steps"))
    if data is None:
        return []
    where = f"{seen}: in the validation data"
    if args.get("validation_split"):  # Keras took the last rows of fit's data
        where += f" (fit's data from row {_rows(args.get('x'))} on, so add that to each row)"
    where += ","
    from nanguard.audit.guard import as_warnings, audit_by_output, of_output

    found = []
    for output, report in audit_by_output(model, data, y):
        report.findings = [f for f in report.findings if f.severity == "error"]
        found += as_warnings(report, step, of_output(where, output))
    if found or nonfinite_weights(model.weights):  # a broken model, not a row, makes it NaN
        return found
    return _evaluated(model, data, y, args.get("batch_size") or ROWS_PER_BATCH, step, where)


def _readable(x: Any, steps: int | None) -> Any:
    """The validation inputs if reading them again changes nothing for training, else None."""
    if x is None:
        return None
    if hasattr(x, "element_spec"):  # tf.data: elements are batches
        import tensorflow as tf

        if steps:
            return x.take(steps)
        return None if x.cardinality() == tf.data.INFINITE_CARDINALITY else x
    from nanguard.audit.guard import in_memory

    return x if in_memory(x) else None


def _rows(x: Any) -> int:
    """Rows of an array, a DataFrame, or a dict, list or tuple of them (several inputs)."""
    import keras

    return len(keras.tree.flatten(x)[0])


def _batches(x: Any, y: Any, size: int) -> Any:
    """(first row, inputs, targets) of each batch of arrays or of a dataset."""
    import keras

    if hasattr(x, "element_spec"):
        start = 0
        for element in x:
            bx, by, _ = keras.utils.unpack_x_y_sample_weight(tuple(element))
            yield start, bx, by
            start += _rows(bx)
        return
    for start in range(0, _rows(x), size):
        cut = slice(start, start + size)
        by = None if y is None else np.asarray(y[cut])
        yield start, keras.tree.map_structure(lambda v, cut=cut: np.asarray(v[cut]), x), by


def _evaluated(model: Any, x: Any, y: Any, size: int, step: int, where: str) -> list[Warning]:
    """Rows whose own loss is not finite, found by evaluating the model batch by batch: an
    output that is not finite, or finite but ``EXTREME`` times beyond every row with a finite
    loss, means the inputs overflowed the model; else the loss rejects the targets."""
    import keras

    from nanguard.diagnose.sample_loss import per_sample_loss

    bad_rows: list[int] = []
    bad_peaks: list[float] = []  # largest |output| of each bad row (inf if not finite)
    good_peak = 0.0  # largest |output| of the rows with a finite loss
    name = None
    for start, bx, by in _batches(x, y, size):
        if by is None:
            return []
        y_pred = model(bx, training=False)
        name, losses = per_sample_loss(model, None, by, y_pred)
        if losses is None:  # several outputs, or a loss that needs more than (y, y_pred)
            return []
        pred = np.abs(np.asarray(keras.ops.convert_to_numpy(y_pred), dtype=np.float64))
        peaks = np.nan_to_num(pred.reshape(len(pred), -1).max(axis=1), nan=np.inf)
        ok = np.isfinite(losses)
        good_peak = max(good_peak, float(peaks[ok].max(initial=0.0)))
        bad_rows += (start + np.flatnonzero(~ok)).tolist()
        bad_peaks += peaks[~ok].tolist()
    extreme = np.asarray(bad_peaks) > EXTREME * (good_peak + 1.0)
    overflow = [r for r, e in zip(bad_rows, extreme, strict=True) if e]
    rejected = [r for r, e in zip(bad_rows, extreme, strict=True) if not e]
    out = []
    if overflow:
        out.append(
            Warning(
                step,
                "input_outlier",
                None,
                "critical",
                f"{where} the model's output is not finite or extreme on rows {listed(overflow)} "
                f"(up to {max(bad_peaks):.3g}; every other row: up to {good_peak:.3g}): their "
                "inputs overflow the model; compare them with the training data (a unit "
                "mistake, a sentinel like 1e9, or scaled unlike the training data)",
            )
        )
    if rejected:
        out.append(
            Warning(
                step,
                "invalid_target",
                None,
                "critical",
                f"{where} {_loss_name(name)} is not finite on rows {listed(rejected)} while "
                "the model's output there is ordinary: their targets are outside what the loss "
                "accepts",
            )
        )
    return out


def _loss_name(name: str | None) -> str:
    return "the loss" if not name or name.startswith("<") else name
