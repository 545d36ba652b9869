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


def output_activation(model: keras.Model) -> str | None:
    """Name of the last layer's activation, if it has one."""
    layer = model.layers[-1] if model.layers else None
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", None)


def per_sample_loss(
    model: keras.Model, x: Any, y: Any
) -> tuple[str, np.ndarray, np.ndarray] | None:
    """(loss name, its unreduced values, the predictions) for a single-output compiled loss."""
    loss = getattr(model, "loss", None)
    if isinstance(loss, str):
        loss = keras.losses.get(loss)
    if loss is None or y is None or isinstance(y, list | tuple | dict):
        return None
    y_pred = model(x, training=False)
    if isinstance(y_pred, list | tuple | dict):
        return None
    if isinstance(loss, keras.losses.Loss):
        name, values = loss.name, loss.call(keras.ops.convert_to_tensor(y), y_pred)
    elif callable(loss):
        name, values = (
            getattr(loss, "__name__", "loss"),
            loss(keras.ops.convert_to_tensor(y), y_pred),
        )
    else:
        return None
    as_numpy = np.asarray(keras.ops.convert_to_numpy(values), dtype=np.float64)
    if as_numpy.ndim > 1:
        as_numpy = as_numpy.reshape(as_numpy.shape[0], -1).sum(axis=1)
    return name, as_numpy, np.asarray(keras.ops.convert_to_numpy(y_pred), dtype=np.float64)
