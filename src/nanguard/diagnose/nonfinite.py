"""Where a kept batch holds NaN/Inf: its samples, flat features, count and array name; which
weights of a model or layer hold NaN/Inf, and the fixes for weights that do.

Numpy and Keras only, so that the JAX and PyTorch guards (:mod:`nanguard.backends`), which run
without TensorFlow, diagnose a batch the way :mod:`nanguard.diagnose.triage` does.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

MAX_LISTED = 10


def listed(values: list[int]) -> str:
    head = ", ".join(str(v) for v in values[:MAX_LISTED])
    return head + (f" and {len(values) - MAX_LISTED} more" if len(values) > MAX_LISTED else "")


def named_arrays(value: Any) -> list[tuple[str, np.ndarray]]:
    """The numeric arrays of a (nested) batch part, one row per sample, with a name each, in
    Keras' flatten order (dicts by sorted key)."""
    if value is None:
        return []
    if isinstance(value, dict):
        named = [(str(k), v) for k, v in sorted(value.items()) if v is not None]
    else:
        flat = [v for v in keras.tree.flatten(value) if v is not None]
        named = [(f"input {i}" if len(flat) > 1 else "input", v) for i, v in enumerate(flat)]
    out = []
    for name, leaf in named:
        array = np.asarray(leaf)
        if array.ndim and array.dtype.kind in "fiub":
            out.append((name, array.reshape(array.shape[0], -1)))
    return out


def nonfinite_rows(value: Any) -> tuple[list[int], list[int], int, str | None]:
    """Samples and flat features holding NaN/Inf across all arrays of ``value``; their count;
    the name of the first array that holds one."""
    samples: set[int] = set()
    features: set[int] = set()
    count, name = 0, None
    for path, rows in named_arrays(value):
        if rows.dtype.kind != "f":
            continue
        bad = ~np.isfinite(rows)
        if bad.any():
            name = name or path
            where_rows, where_cols = np.nonzero(bad)
            samples.update(where_rows.tolist())
            features.update(where_cols.tolist())
            count += int(bad.sum())
    return sorted(samples), sorted(features), count, name


def nonfinite_weights(variables: Any) -> list[str]:
    """``path (k of n values non-finite)`` for each floating-point variable holding NaN/Inf.

    Each variable is first checked where it lives (one reduction on its device), so a finite one
    is never copied to the host."""
    out = []
    for variable in variables:
        if not keras.backend.is_float_dtype(variable.dtype):
            continue
        if bool(keras.ops.convert_to_numpy(keras.ops.all(keras.ops.isfinite(variable.value)))):
            continue
        values = np.asarray(keras.ops.convert_to_numpy(variable.value), dtype=np.float64)
        count = int(values.size - np.isfinite(values).sum())
        out.append(f"{variable.path} ({count} of {values.size} values non-finite)")
    return out


def weights_before(bad: list[str] | None) -> str:
    """The evidence line on the model's weights before a step whose update the guard kept out:
    ``bad`` as :func:`nonfinite_weights` measured them, None where they could not be read."""
    if bad is None:
        return "the guard skipped this step's update"
    if bad:
        return f"the model's weights held non-finite values before this step already: {bad[0]}"
    return "the model's weights were finite before this step (the guard skipped the update)"


def layers_holding_nonfinite(model: Any) -> list[tuple[Any, list[str]]]:
    """Each layer of ``model`` whose own weights (not its sublayers') hold NaN/Inf, with them."""
    out = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        own = [*layer._trainable_variables, *layer._non_trainable_variables]
        bad = nonfinite_weights(own)
        if bad:
            out.append((layer, bad))
    return out


def finite_weights_fix(layer: Any) -> str:
    """How to give ``layer`` finite weights again: adapted layers were adapted on NaN/Inf data;
    any other layer had them set (a checkpoint, ``set_weights``, statistics)."""
    if hasattr(layer, "adapt"):
        return (
            f"'{layer.name}' was adapted on data with NaN/Inf: adapt it on finite rows, e.g. "
            "`keep = np.isfinite(x).all(axis=1); layer.adapt(x[keep])` (`nanguard audit` names "
            "the rows), or clean the data before adapting."
        )
    return (
        f"Give '{layer.name}' finite weights: find where they were set (`set_weights`, a loaded "
        "checkpoint saved after a NaN, statistics computed on data with NaN) and redo that from "
        "finite values."
    )


def learning_rate_value(model: Any) -> float | None:
    try:
        return float(np.asarray(keras.ops.convert_to_numpy(model.optimizer.learning_rate)))
    except (AttributeError, TypeError, ValueError):
        return None


def overflow_fix(lr: float | None) -> str:
    """The fix for an update that overflowed finite weights."""
    return (
        f"Lower the learning rate{f' from {lr:g}' if lr else ''} by orders of magnitude; "
        "clip gradients (`clipnorm=1.0`)."
    )
