"""Bounded host-side history: per-step probe rows, and weight measurements on sampled steps."""

from __future__ import annotations

import numpy as np

STEP_FIELDS = ("step", "loss", "flags", "grad_norms")
SAMPLE_FIELDS = ("sample_step", "weight_norms", "update_ratios")


class History:
    """The last ``size`` steps (loss, flags, per-variable gradient norms) and the weight norms
    and update/weight ratios of the last ``size`` sampled steps, as numpy arrays."""

    def __init__(self, variable_names: list[str], size: int = 20_000) -> None:
        self.variable_names = list(variable_names)
        self.size = size
        n = len(variable_names)
        self.rows: dict[str, np.ndarray] = {
            "step": np.zeros(0, np.int64),
            "loss": np.zeros(0, np.float32),
            "flags": np.zeros(0, np.int32),
            "grad_norms": np.zeros((0, n), np.float64),
            "sample_step": np.zeros(0, np.int64),
            "weight_norms": np.zeros((0, n), np.float32),
            "update_ratios": np.zeros((0, n), np.float32),
        }

    def extend(self, rows: dict[str, np.ndarray]) -> None:
        for key in STEP_FIELDS:
            self.rows[key] = np.concatenate([self.rows[key], rows[key]])[-self.size :]

    def add_sample(self, step: int, weight_norms: np.ndarray, update_ratios: np.ndarray) -> None:
        sample = {
            "sample_step": np.array([step]),
            "weight_norms": weight_norms[None],
            "update_ratios": update_ratios[None],
        }
        for key in SAMPLE_FIELDS:
            self.rows[key] = np.concatenate([self.rows[key], sample[key]])[-self.size :]

    def before(self, step: int) -> dict[str, np.ndarray]:
        """Rows and samples of the steps strictly before ``step``."""
        keep = self.rows["step"] < step
        sampled = self.rows["sample_step"] < step
        out = {key: self.rows[key][keep] for key in STEP_FIELDS}
        out.update({key: self.rows[key][sampled] for key in SAMPLE_FIELDS})
        return out

    def at(self, step: int) -> dict[str, np.ndarray] | None:
        hit = np.flatnonzero(self.rows["step"] == step)
        if len(hit) == 0:
            return None
        return {key: self.rows[key][hit[0]] for key in STEP_FIELDS}
