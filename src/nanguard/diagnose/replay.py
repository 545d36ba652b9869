"""Eager forward replay of an offending batch, layer by layer.

The guard skipped the update, so the weights in memory are the pre-step weights and the replay
reproduces the incident. Sequential models are replayed layer after layer; functional models
through one auxiliary model that exposes every layer's output (layers visited in topological
order, so the first non-finite output belongs to a layer whose inputs were finite).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np


def _rows_nonfinite(value: Any) -> np.ndarray:
    arr = np.asarray(keras.ops.convert_to_numpy(value))
    if arr.dtype.kind != "f" or arr.ndim == 0:
        return np.zeros(0, bool)
    return ~np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1)


def _peak(value: Any) -> float:
    arr = np.asarray(keras.ops.convert_to_numpy(value), dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    return float(np.max(np.abs(finite))) if finite.size else float("nan")


def _layer_outputs(model: keras.Model, x: Any) -> list[tuple[keras.layers.Layer, Any, Any]]:
    """(layer, its input value, its output value) in execution order."""
    if isinstance(model, keras.Sequential):
        out = []
        h = x
        for layer in model.layers:
            y = layer(h, training=False)
            out.append((layer, h, y))
            h = y
        return out
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    probe = keras.Model(model.inputs, [layer.output for layer in layers])
    values = probe(x, training=False)
    values = values if isinstance(values, list | tuple) else [values]
    return [(layer, None, value) for layer, value in zip(layers, values, strict=True)]


def first_nonfinite_layer(model: keras.Model, x: Any) -> tuple[str, list[int], str] | None:
    """(layer name, batch positions with non-finite output, detail) or None if all finite."""
    try:
        outputs = _layer_outputs(model, x)
    except (ValueError, TypeError, AttributeError, NotImplementedError):
        return None  # subclassed or shared-layer models: not localizable this way
    for layer, given, value in outputs:
        flat = value if not isinstance(value, list | tuple | dict) else keras.tree.flatten(value)[0]
        bad = _rows_nonfinite(flat)
        if bad.any():
            detail = f"{int(bad.sum())} of {len(bad)} samples"
            if given is not None:
                detail += f"; its input peaks at |x| = {_peak(given):.3g}"
            return layer.name, np.flatnonzero(bad).tolist(), detail
    return None
