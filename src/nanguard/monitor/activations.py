"""Activation statistics on one kept batch: dead ReLUs, saturated sigmoid/tanh, float16 peaks.

Run by the host every N train-function calls (``Guard(activation_every=...)``): one inference
forward pass over the batch through a feature model that exposes the watched layers' outputs.
Inference mode touches no state (no dropout draws, no BatchNorm statistics), so training is
unchanged. Only models with known inputs (Sequential, Functional) are watched.
"""

from __future__ import annotations

import weakref
from typing import Any

import keras
import numpy as np

from nanguard.monitor.findings import Finding

FLOAT16_MAX = 65504.0
DEAD_WARNING = 0.5  # fraction of a layer's units
SATURATED_WARNING = 0.5
_KINDS = ("relu", "sigmoid", "tanh")
_GATED = ("LSTM", "GRU", "LSTMCell", "GRUCell")  # outputs are products, not one activation


def activation_kind(layer: Any) -> str | None:
    """'relu', 'sigmoid' or 'tanh' when the layer's output is that function's, else None."""
    if type(layer).__name__ in _GATED:
        return None
    if type(layer).__name__ == "ReLU":
        return "relu"
    name = getattr(getattr(layer, "activation", None), "__name__", None)
    return name if name in _KINDS else None


_SAMPLERS: weakref.WeakKeyDictionary[Any, ActivationSampler] = weakref.WeakKeyDictionary()


def sampler_for(model: keras.Model) -> ActivationSampler:
    """One sampler per model, kept across ``fit`` calls so its forward pass is traced once."""
    sampler = _SAMPLERS.get(model)
    if sampler is None:
        sampler = _SAMPLERS[model] = ActivationSampler(model)
    return sampler


class ActivationSampler:
    def __init__(self, model: keras.Model) -> None:
        self.output_layer = model.layers[-1] if model.layers else None
        watched = []
        for layer in model.layers:
            kind = activation_kind(layer)
            half = getattr(layer, "compute_dtype", "float32") == "float16"
            if kind or half:
                watched.append((layer, kind, half))
        self.watched = watched
        self.extractor: keras.Model | None = None
        if watched:
            try:
                outputs = [layer.output for layer, _, _ in watched]
                self.extractor = keras.Model(model.inputs, outputs)
            except (AttributeError, ValueError, TypeError):  # subclassed: no symbolic graph
                self.extractor = None
        if self.extractor is not None:
            import tensorflow as tf

            extractor = self.extractor
            self._forward = tf.function(
                lambda x: extractor(x, training=False), reduce_retracing=True
            )

    def sample(self, x: Any) -> list[Finding]:
        if self.extractor is None:
            return []
        if len(self.extractor.inputs) == 1 and not isinstance(x, list | tuple | dict):
            x = [x]  # a functional model's inputs are a list, even of one
        outputs = self._forward(x)
        if not isinstance(outputs, list | tuple):
            outputs = [outputs]
        findings = []
        for (layer, kind, half), out in zip(self.watched, outputs, strict=True):
            values = np.asarray(keras.ops.convert_to_numpy(out), np.float32)
            if values.ndim < 2 or values.shape[0] == 0:
                continue
            units = values.reshape(-1, values.shape[-1])
            found = None
            if kind == "relu":
                found = _dead(layer.name, units)
            elif kind and layer is not self.output_layer:
                found = _saturated(layer.name, kind, units)
            if found is not None:
                findings.append(found)
            if half:
                peak = _float16_peak(layer.name, values)
                if peak is not None:
                    findings.append(peak)
        return findings


def _dead(name: str, units: np.ndarray) -> Finding | None:
    dead = (units <= 0).all(axis=0)
    share = float(dead.mean())
    if share < DEAD_WARNING:
        return None
    return Finding(
        "dead_relu",
        "critical" if dead.all() else "warning",
        f"{int(dead.sum())} of {dead.size} ReLU units output 0 for every sample of the kept "
        f"batch ({share:.0%}): no gradient flows through them. Scale the inputs, lower the "
        "learning rate, or use He init / LeakyReLU.",
        layer=name,
    )


def _saturated(name: str, kind: str, units: np.ndarray) -> Finding | None:
    edge = np.abs(units) > 0.99 if kind == "tanh" else (units < 0.01) | (units > 0.99)
    saturated = edge.all(axis=0)
    share = float(saturated.mean())
    if share < SATURATED_WARNING:
        return None
    return Finding(
        "saturated_activation",
        "warning",
        f"{int(saturated.sum())} of {saturated.size} {kind} units are saturated for every "
        f"sample of the kept batch ({share:.0%}): their gradient is near 0. Scale the inputs, "
        "use a smaller initialization or add normalization before them.",
        layer=name,
    )


def _float16_peak(name: str, values: np.ndarray) -> Finding | None:
    finite = np.isfinite(values)
    peak = float(np.max(np.abs(values[finite]))) if finite.any() else 0.0
    if finite.all() and peak < FLOAT16_MAX / 16:
        return None
    overflowed = not finite.all()
    severity = "critical" if overflowed or peak >= FLOAT16_MAX / 2 else "warning"
    what = "overflowed float16 already" if overflowed else f"peaked at {peak:.4g}"
    return Finding(
        "float16_overflow_risk",
        severity,
        f"outputs {what} under float16 (max 65504; headroom {FLOAT16_MAX / max(peak, 1):.1f}x)."
        f" Compute this layer in float32 (`dtype='float32'`) or normalize its inputs.",
        layer=name,
    )
