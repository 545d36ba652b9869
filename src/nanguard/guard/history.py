"""Bounded host-side history of the per-step probe rows."""

from __future__ import annotations

import numpy as np

FIELDS = ("step", "loss", "flags", "grad_norms", "weight_norms", "update_ratios")


class History:
    """The last ``size`` steps: loss, flags and per-variable norms, as numpy arrays."""

    def __init__(self, variable_names: list[str], size: int = 20_000) -> None:
        self.variable_names = list(variable_names)
        self.size = size
        n = len(variable_names)
        self.rows: dict[str, np.ndarray] = {
            "step": np.zeros(0, np.int64),
            "loss": np.zeros(0, np.float32),
            "flags": np.zeros(0, np.int32),
            "grad_norms": np.zeros((0, n), np.float32),
            "weight_norms": np.zeros((0, n), np.float32),
            "update_ratios": np.zeros((0, n), np.float32),
        }

    def extend(self, rows: dict[str, np.ndarray]) -> None:
        for key in FIELDS:
            self.rows[key] = np.concatenate([self.rows[key], rows[key]])[-self.size :]

    def __len__(self) -> int:
        return len(self.rows["step"])

    def before(self, step: int) -> dict[str, np.ndarray]:
        """Rows of the steps strictly before ``step``."""
        keep = self.rows["step"] < step
        return {key: value[keep] for key, value in self.rows.items()}

    def at(self, step: int) -> dict[str, np.ndarray] | None:
        hit = np.flatnonzero(self.rows["step"] == step)
        if len(hit) == 0:
            return None
        return {key: value[hit[0]] for key, value in self.rows.items()}

    def global_grad_norm(self) -> np.ndarray:
        g = self.rows["grad_norms"].astype(np.float64)
        return np.sqrt(np.nansum(g * g, axis=1)) if g.size else np.zeros(0)
