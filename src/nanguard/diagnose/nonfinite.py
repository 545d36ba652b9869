"""Where a kept batch holds NaN/Inf: its samples, flat features, count and array name; and which
weights of a model or layer hold NaN/Inf.

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
    """``path (k of n values non-finite)`` for each floating-point variable holding NaN/Inf."""
    out = []
    for variable in variables:
        if not keras.backend.is_float_dtype(variable.dtype):
            continue
        values = np.asarray(keras.ops.convert_to_numpy(variable.value), dtype=np.float64)
        count = int(values.size - np.isfinite(values).sum())
        if count:
            out.append(f"{variable.path} ({count} of {values.size} values non-finite)")
    return out
