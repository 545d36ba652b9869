"""What the loss in use expects of its inputs, and what the model's output gives it.

A loss has a domain: cross-entropies take probabilities (unless ``from_logits``) and
non-negative targets, binary cross-entropy targets in [0, 1], Poisson positive predictions and
non-negative counts. Reading it off the compiled loss (or the loss object a hand-written loop
called) lets the rules say "targets outside the loss's domain" or "relu output into
cross-entropy" from the configuration, and check it against the measured values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# Canonical loss function names (Keras' own) -> (target range, needs probabilities, needs y_pred>0)
_DOMAINS: dict[str, tuple[tuple[float, float] | None, bool, bool]] = {
    "binary_crossentropy": ((0.0, 1.0), True, False),
    "binary_focal_crossentropy": ((0.0, 1.0), True, False),
    "categorical_crossentropy": ((0.0, np.inf), True, False),
    "categorical_focal_crossentropy": ((0.0, np.inf), True, False),
    "sparse_categorical_crossentropy": (None, True, False),
    "poisson": ((0.0, np.inf), False, True),
    "kl_divergence": ((0.0, np.inf), True, False),
}
_ALIASES = {
    "bce": "binary_crossentropy",
    "kld": "kl_divergence",
    "kullback_leibler_divergence": "kl_divergence",
}

_TARGET_FIXES = {
    "binary_crossentropy": "Binary cross-entropy needs targets in [0, 1]: map the labels "
    "(e.g. `y = (y > 0).astype('float32')` for {-1, 1} labels, `y / 255.0` for masks), or "
    "pick a loss that fits the targets.",
    "poisson": "Poisson needs counts >= 0: fix or drop the negative targets, or use 'mse' for "
    "targets that can be negative.",
}


@dataclass
class LossInfo:
    name: str  # canonical function name, or the name the user gave a hand-written loss
    from_logits: bool
    target_range: tuple[float, float] | None
    needs_probabilities: bool
    needs_positive: bool

    @property
    def nonnegative(self) -> bool:
        """A loss that cannot go below zero with valid targets."""
        return self.target_range is not None or self.needs_probabilities

    @property
    def target_fix(self) -> str:
        return _TARGET_FIXES.get(
            self.name,
            f"'{self.name}' needs targets in its domain (non-negative class weights / "
            "probabilities): fix the targets, or use a loss that fits them.",
        )


def _canonical(name: str) -> str:
    snake = "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
    snake = snake.replace("cross_entropy", "crossentropy")
    return _ALIASES.get(snake, snake)


def describe(model: Any, loss: Any = None) -> LossInfo | None:
    """The single loss a model (or hand-written loop) optimizes; None when several or unknown."""
    if loss is None:
        loss = getattr(model, "loss", None)
    if isinstance(loss, list | tuple | dict):
        return None
    if loss is None:
        return None
    if isinstance(loss, str):
        name, from_logits = _canonical(loss), False
    else:
        fn = getattr(loss, "fn", None)  # keras.losses.LossFunctionWrapper
        kwargs = getattr(loss, "_fn_kwargs", {}) or {}
        from_logits = bool(kwargs.get("from_logits", getattr(loss, "from_logits", False)))
        raw = getattr(fn, "__name__", None) or getattr(loss, "__name__", None)
        raw = raw or type(loss).__name__
        name = _canonical(raw)
    target_range, probabilities, positive = _DOMAINS.get(name, (None, False, False))
    return LossInfo(name, from_logits, target_range, probabilities, positive)


def went_negative(history: dict[str, np.ndarray]) -> tuple[int, float] | None:
    """(step, loss) of the first recorded finite step whose loss was below zero."""
    loss = history.get("loss")
    if loss is None or not len(loss):
        return None
    below = np.flatnonzero(np.isfinite(loss) & (loss < 0))
    if not len(below):
        return None
    return int(history["step"][below[0]]), float(loss[below[0]])


def output_activation(model: Any) -> str | None:
    """The activation of the layer that produces the model's (first) output, by name."""
    layer = None
    try:
        layer = model.outputs[0]._keras_history.operation
    except (AttributeError, IndexError, TypeError, ValueError):
        layers = getattr(model, "layers", None) or []
        layer = layers[-1] if layers else None
    if layer is None:
        return None
    kind = type(layer).__name__
    if kind in ("Softmax", "ReLU", "LeakyReLU", "ELU"):
        return {"Softmax": "softmax", "ReLU": "relu", "LeakyReLU": "leaky_relu", "ELU": "elu"}[kind]
    activation = getattr(layer, "activation", None)
    if activation is None:
        return "linear" if kind in ("Dense", "EinsumDense", "Conv1D", "Conv2D") else None
    name = getattr(activation, "__name__", activation)
    return name if isinstance(name, str) else None


def sparse_label_loss(model: Any) -> tuple[bool, int | None]:
    """Whether a model's compiled loss (or a loss object) takes integer class labels, and its
    ``ignore_class``."""
    import keras

    loss = model if isinstance(model, keras.losses.Loss) else getattr(model, "loss", None)
    if isinstance(loss, str):
        return loss in ("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy"), None
    if isinstance(loss, keras.losses.Loss) and hasattr(loss, "fn"):  # SparseCategoricalCrossentropy
        ignore = getattr(loss, "_fn_kwargs", {}).get("ignore_class")
        return loss.fn is keras.losses.sparse_categorical_crossentropy, ignore
    return loss is keras.losses.sparse_categorical_crossentropy, None
