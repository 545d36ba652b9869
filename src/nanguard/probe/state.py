"""The guard's in-graph memory: a handful of ``tf.Variable`` written inside each training step.

Everything the host needs to poll is packed into one small int64 ``status`` vector (one
device-to-host read). Per-step measurements go into one ring buffer that the host drains only now
and then (and on an incident), which makes ``steps_per_execution > 1`` exact: every step of an
execution leaves its own row, verdicts included, so bad steps are found there. Two wide writes
per step keep the in-graph op count (what a CPU step pays for) low.
"""

from __future__ import annotations

import contextlib
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
STEP, HALTED, TOTAL_BAD, CONSECUTIVE_BAD, SCALER_RUN = range(5)
STATUS_SIZE = 5

# Columns of a per-step row: the loss; the verdicts "loss / gradients / labels non-finite or out
# of range" (0 or 1); the loss scaler's run of skipped steps; then half of each variable's summed
# squared gradient (what tf.nn.l2_loss gives in one kernel).
LOSS_COLUMN, VERDICT_COLUMNS, SCALER_COLUMN, GRAD_COLUMNS = 0, slice(1, 4), 4, 5


def flags_of(
    verdicts: np.ndarray, scaler_run: np.ndarray, is_scaler: bool, patience: int
) -> np.ndarray:
    """Flag bits of steps from their recorded verdicts (see the module's bit constants)."""
    v = verdicts.astype(np.int64)
    flags = v[:, 0] * LOSS_NONFINITE + v[:, 2] * LABEL_OUT_OF_RANGE
    if is_scaler:
        flags += v[:, 1] * SCALER_SKIP + (scaler_run >= patience) * SCALER_STUCK
    else:
        flags += v[:, 1] * GRAD_NONFINITE
    return flags.astype(np.int32)


@dataclass
class Limits:
    """Bounds on how long the ``skip`` policy keeps going."""

    max_consecutive: int = 10
    max_total: int = 100
    scaler_patience: int = 25

    @property
    def budget(self) -> list[int]:
        """Upper bounds of ``status[HALTED : CONSECUTIVE_BAD + 1]`` while the run may go on."""
        return [0, self.max_total, self.max_consecutive]


def halted(status: np.ndarray, limits: Limits) -> bool:
    """Host side of the graph's rule: a stop happened, or the skip budget is spent."""
    return bool((status[HALTED : CONSECUTIVE_BAD + 1] > limits.budget).any())


def guard_variable(value: tf.Tensor | np.ndarray, name: str, **kwargs: object) -> tf.Variable:
    """A variable the guard writes inside the step: never trained, and (created in
    :func:`per_replica_scope`) one copy per replica, each written by its own replica with no
    cross-device traffic (every replica computes the same status from all-reduced verdicts);
    the host reads the first copy and writes all. A single variable on the first device made
    every other replica send its writes there each step."""
    return tf.Variable(
        value,
        trainable=False,
        name=f"nanguard_{name}",
        synchronization=tf.VariableSynchronization.ON_READ,
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        **kwargs,
    )


def per_replica_scope(strategy: tf.distribute.Strategy) -> contextlib.AbstractContextManager:
    """Where to create the guard's variables: in a ``MirroredStrategy``'s scope, so that each
    replica gets its own copy on its own device. Elsewhere plain variables: across workers each
    process keeps its own (a distributed variable would broadcast its initial value, which no
    collective does for strings), and ``CentralStorageStrategy`` writes its per-replica
    variables through a ``merge_call``, which no ``tf.cond`` can hold."""
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return strategy.scope()
    return contextlib.nullcontext()


def local_copies(variable: tf.Variable) -> list[tf.Variable]:
    """This process's copies of a variable each replica writes for itself (the variable itself
    when not distributed). The host reads the first directly: through the distributed variable
    a read cost 2.6x more here (66 against 25 us), and the host polls often."""
    return list(getattr(variable, "values", (variable,)))


class ProbeState:
    """Variables one guarded optimizer writes each step; see the module docstring."""

    def __init__(self, n_vars: int, ring: int) -> None:
        self.n_vars = n_vars
        self.ring = ring
        self.status = guard_variable(np.zeros(STATUS_SIZE, np.int64), "status")
        # One spare row at the end takes the writes of dead steps (after a halt).
        self.rows = guard_variable(
            np.full((ring + 1, GRAD_COLUMNS + n_vars), np.nan, np.float32), "rows"
        )

    def resume(self) -> None:
        """Start a new run: lift a previous run's halt and skip budget; the step count goes on."""
        status = self.status.numpy()
        status[[HALTED, TOTAL_BAD, CONSECUTIVE_BAD, SCALER_RUN]] = 0
        self.status.assign(status)

    def read_status(self) -> np.ndarray:
        return local_copies(self.status)[0].numpy()

    def read_rows(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Per-step rows for global steps ``[start, stop)`` still held in the ring."""
        start = max(start, stop - self.ring)
        steps = np.arange(start, stop)
        rows = local_copies(self.rows)[0].numpy()[steps % self.ring]
        return {
            "step": steps,
            "loss": rows[:, LOSS_COLUMN],
            "verdicts": rows[:, VERDICT_COLUMNS],
            "scaler_run": rows[:, SCALER_COLUMN],
            "grad_norms": np.sqrt(2.0 * rows[:, GRAD_COLUMNS:].astype(np.float64)),
        }
