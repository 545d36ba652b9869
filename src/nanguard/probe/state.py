"""The guard's in-graph memory: a handful of ``tf.Variable`` written inside each training step.

Everything the host needs per step is packed into one small int64 ``status`` vector, so the
callback pays one device-to-host read per batch. Per-step measurements go into ring buffers that
the host drains only now and then (and on an incident), which makes ``steps_per_execution > 1``
exact: every step of an execution leaves its own row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

# Bits of a step's flags.
LOSS_NONFINITE = 1
GRAD_NONFINITE = 2
WEIGHT_NONFINITE = 4
LABEL_OUT_OF_RANGE = 8
SCALER_SKIP = 16  # LossScaleOptimizer skipped the step itself (normal under mixed precision)
SCALER_STUCK = 32  # ... for `scaler_patience` steps in a row: float16 overflow it cannot fix
BAD = LOSS_NONFINITE | GRAD_NONFINITE | WEIGHT_NONFINITE | LABEL_OUT_OF_RANGE | SCALER_STUCK

# Slots of the status vector.
STEP, HALTED, TOTAL_BAD, CONSECUTIVE_BAD, FIRST_BAD, LAST_BAD, SCALER_RUN = range(7)
STATUS_SIZE = 7

BAD_LOG = 256  # bad steps remembered in graph between two host reads


@dataclass
class Limits:
    """Bounds on how long the ``skip`` policy keeps going."""

    max_consecutive: int = 10
    max_total: int = 100
    scaler_patience: int = 25


def _var(value: tf.Tensor | np.ndarray, name: str, **kwargs: object) -> tf.Variable:
    return tf.Variable(
        value,
        trainable=False,
        name=f"nanguard_{name}",
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        **kwargs,
    )


class ProbeState:
    """Variables one guarded optimizer writes each step; see the module docstring."""

    def __init__(self, n_vars: int, ring: int, ratio_every: int) -> None:
        self.n_vars = n_vars
        self.ring = ring
        self.ratio_every = ratio_every
        nan = np.full((ring, n_vars), np.nan, np.float32)
        init = np.zeros(STATUS_SIZE, np.int64)
        init[[FIRST_BAD, LAST_BAD]] = -1
        self.status = _var(init, "status")
        self.loss = _var(np.full(ring, np.nan, np.float32), "loss")
        self.flags = _var(np.zeros(ring, np.int32), "flags")
        self.grad_norms = _var(nan, "grad_norms")
        self.weight_norms = _var(nan, "weight_norms")
        self.update_ratios = _var(nan, "update_ratios")
        self.bad_steps = _var(np.full(BAD_LOG, -1, np.int64), "bad_steps")
        self.bad_flags = _var(np.zeros(BAD_LOG, np.int32), "bad_flags")

    def resume(self) -> None:
        """Start a new run: lift a previous run's halt; step and incident counts go on."""
        status = self.status.numpy()
        status[[HALTED, CONSECUTIVE_BAD, SCALER_RUN]] = 0
        self.status.assign(status)

    def read_status(self) -> np.ndarray:
        return self.status.numpy()

    def read_rows(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Per-step rows for global steps ``[start, stop)`` still held in the ring."""
        start = max(start, stop - self.ring)
        idx = np.arange(start, stop) % self.ring
        return {
            "step": np.arange(start, stop),
            "loss": self.loss.numpy()[idx],
            "flags": self.flags.numpy()[idx],
            "grad_norms": self.grad_norms.numpy()[idx],
            "weight_norms": self.weight_norms.numpy()[idx],
            "update_ratios": self.update_ratios.numpy()[idx],
        }

    def read_bad(self, start_count: int, stop_count: int) -> list[tuple[int, int]]:
        """(step, flags) of bad steps number ``[start_count, stop_count)`` still in the log."""
        start_count = max(start_count, stop_count - BAD_LOG)
        steps, flags = self.bad_steps.numpy(), self.bad_flags.numpy()
        return [
            (int(steps[i % BAD_LOG]), int(flags[i % BAD_LOG]))
            for i in range(start_count, stop_count)
        ]
