"""Which layer each guarded variable belongs to, so per-variable norms become per-layer ones."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class LayerGroup:
    """The guarded variables of one layer: their columns in the history, and their sizes."""

    name: str
    columns: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    has_kernel: bool = False  # a weight matrix (Dense, Conv, recurrent cells): norms compare
    sparse: bool = False  # embeddings: each step touches a few rows, its norms do not compare

    @property
    def size(self) -> int:
        return int(sum(self.sizes))


def layer_groups(model: Any, variables: list[Any], names: list[str]) -> list[LayerGroup]:
    """Group the optimizer's variables by the model's top-level layers, in model order.

    Without a model (hand-written loops) the variable path names the layer.
    """
    owner: dict[str, Any] = {}
    for layer in getattr(model, "layers", None) or []:
        for weight in getattr(layer, "trainable_weights", []):
            owner.setdefault(getattr(weight, "path", weight.name), layer)
    groups: dict[str, LayerGroup] = {}
    for column, (variable, name) in enumerate(zip(variables, names, strict=True)):
        layer = owner.get(name)
        parts = name.split("/")
        label = layer.name if layer is not None else (parts[-2] if len(parts) > 1 else name)
        group = groups.setdefault(label, LayerGroup(label))
        group.columns.append(column)
        group.sizes.append(int(np.prod(variable.shape)) if len(variable.shape) else 1)
        group.has_kernel |= parts[-1] in ("kernel", "recurrent_kernel", "depthwise_kernel")
        group.sparse |= type(layer).__name__ == "Embedding" or parts[-1] == "embeddings"
    return list(groups.values())


def group_norms(norms: np.ndarray, groups: list[LayerGroup]) -> np.ndarray:
    """Per-layer gradient norms (steps x layers) from per-variable ones (steps x variables)."""
    squares = np.square(norms.astype(np.float64))
    return np.sqrt(np.stack([squares[:, g.columns].sum(axis=1) for g in groups], axis=1))
