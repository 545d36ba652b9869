"""Host-side copies of a model's state at healthy moments, to roll a diverging run back to.

A snapshot holds every model variable (weights and non-trainable state such as batch-norm
statistics) and the optimizer's slots (moments, accumulators). It leaves out the optimizer's
step counter and learning rate: the run goes on from where it is, with its schedule, and the
heal lowers the rate on top. Memory is bounded: the run's initial state plus at most ``keep``
recent snapshots, fewer when the model is large (``budget_bytes`` in all).

Taking one costs a device-to-host copy of the model, so the interval between snapshots grows
until that copy is at most ``share`` of the training time between them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Snapshot:
    step: int  # global step the state is from (before that step ran)
    level: float | None  # the loss level just before it (median of recent losses); None: initial
    values: list[np.ndarray]


class Snapshots:
    def __init__(
        self,
        model: Any,
        optimizer: Any,
        *,
        keep: int = 3,
        budget_bytes: int = 2 << 30,
        min_interval: int = 20,
        share: float = 0.01,
    ) -> None:
        inner = getattr(optimizer, "inner_optimizer", optimizer)
        skip = {id(v) for v in (inner.iterations, getattr(inner, "_learning_rate", None))}
        slots = [v for v in optimizer.variables if id(v) not in skip]
        self.variables = [*model.variables, *slots]
        size = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in self.variables)
        self.keep = max(0, min(keep, budget_bytes // max(size, 1) - 1))
        self.initial: Snapshot | None = None
        self.recent: list[Snapshot] = []
        self.interval = min_interval
        self.share = share
        self._last_step = 0
        self._last_time = time.perf_counter()

    def take(self, step: int, level: float | None) -> None:
        began = time.perf_counter()
        snapshot = Snapshot(step, level, [np.array(v.numpy()) for v in self.variables])
        copy = time.perf_counter() - began
        if self.initial is None:
            self.initial = snapshot
        else:
            if self.keep:
                self.recent = [*self.recent, snapshot][-self.keep :]
            per_step = (began - self._last_time) / max(step - self._last_step, 1)
            self.interval = max(self.interval, int(copy / (self.share * per_step)) + 1)
        self._last_step, self._last_time = step, time.perf_counter()

    def due(self, step: int) -> bool:
        return self.initial is None or step - self._last_step >= self.interval

    def choose(self, before: int, start: float | None) -> Snapshot | None:
        """The newest snapshot from before step ``before`` whose loss level was near the best
        seen (a run that diverges often drifts for a while before its first NaN) and within
        twice the run's starting loss ``start``; else the run's initial state."""
        ceiling = np.inf if start is None else start + abs(start)
        held = [
            s for s in self.recent if s.step < before and s.level is not None and s.level <= ceiling
        ]
        if held:
            best = min(s.level for s in held)  # type: ignore[type-var]
            for snapshot in reversed(held):
                assert snapshot.level is not None
                if snapshot.level <= best + 0.5 * abs(best) + 1e-12:
                    return snapshot
        return self.initial

    def restore(self, snapshot: Snapshot) -> None:
        for variable, value in zip(self.variables, snapshot.values, strict=True):
            variable.assign(value)
        self.recent = [s for s in self.recent if s.step <= snapshot.step]
