"""The guard on Keras' PyTorch backend: a bad step's update is never applied.

Keras' PyTorch trainer is eager: ``train_step`` runs the forward pass, ``compute_loss``,
``backward`` and then ``optimizer.apply``. For the duration of a guarded ``fit`` the guard
shadows three of these with instance attributes:

- ``compute_loss`` hands the step's loss over;
- ``optimizer.apply`` decides: one fused norm per gradient (``torch._foreach_norm``) summed with
  the loss gives one scalar that is finite exactly when all are (the exact element-wise test runs
  only when it is not, which also covers huge-but-finite values whose squares overflow), read by
  the host once per step; a bad step, or any step once the run has halted, skips the update;
- ``train_step`` snapshots the non-trainable and metrics variables before the step (a few small
  tensors: BatchNormalization statistics, which the forward pass moves, and the metric totals)
  and puts them back when the update was skipped, so a skipped step leaves no trace.

The counters are Python ints: the step is eager and synchronous anyway, so reading the verdict
each step costs one device sync and no more. An update that overflows the weights although the
loss and gradients were finite is not blocked (that would take a copy of every weight each step):
the next step's loss or gradients are then non-finite and that step is reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import torch

from nanguard.backends import budget
from nanguard.backends.diagnosis import Batch
from nanguard.backends.host import BadStep


@dataclass
class _Step:
    data: Any
    loss: Any = None
    applied: bool = True  # False: the guard skipped the update; state is put back


class TorchEngine:
    async_safe = False
    weights_live = True

    def __init__(self) -> None:
        self._patched: list[tuple[Any, str]] = []
        self.host_steps = self.steps = 0
        self.halted = False

    # -- wiring --------------------------------------------------------------------------------

    def install(
        self,
        model: keras.Model,
        policy: str,
        limits: budget.Limits,
        on_error: Callable[[BaseException], None],
    ) -> None:
        self.policy, self.limits = policy, limits
        optimizer = model.optimizer
        self._check_grads = not isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        self._originals = {
            "train_step": model.train_step,
            "compute_loss": model.compute_loss,
            "apply": optimizer.apply,
            "train_function": model.train_function,
        }
        self._kept = [*model.non_trainable_variables, *model.metrics_variables]
        self._on_error = on_error
        for owner, name, attr in (
            (model, "train_step", self._train_step),
            (model, "compute_loss", self._compute_loss),
            (optimizer, "apply", self._apply),
        ):
            setattr(owner, name, attr)
            self._patched.append((owner, name))
        self.model = model
        model.train_function = self._train_function
        self._current: _Step | None = None
        self._last: _Step | None = None
        self._bad: list[BadStep] = []
        self.counts = (0, 0, 0, 0)
        self.host_steps = self.steps = 0
        self.halted = False

    def restore(self) -> None:
        for owner, name in self._patched:
            owner.__dict__.pop(name, None)
        self._patched = []
        if self.model.train_function == self._train_function:
            self.model.train_function = self._originals["train_function"]

    # -- the guarded step ----------------------------------------------------------------------

    def _train_function(self, *args: Any) -> Any:
        try:
            return self._originals["train_function"](*args)
        except Exception as exc:
            self._on_error(exc)
            raise

    def _train_step(self, data: Any) -> Any:
        self.host_steps += 1
        with torch.no_grad():
            saved = [v.value.clone() for v in self._kept]
        self._current = self._last = _Step(data)
        try:
            logs = self._originals["train_step"](data)
        finally:
            step, self._current = self._current, None
        if not step.applied:
            with torch.no_grad():
                for variable, value in zip(self._kept, saved, strict=True):
                    variable.assign(value)
        return logs

    def _compute_loss(self, *args: Any, **kwargs: Any) -> Any:
        loss = self._originals["compute_loss"](*args, **kwargs)
        if self._current is not None:
            self._current.loss = loss
        return loss

    def _apply(self, grads: Any, trainable_variables: Any = None) -> Any:
        step = self._current
        if step is None:  # outside fit's step (a loop of the user's own): not this guard's
            return self._originals["apply"](grads, trainable_variables)
        grads = list(grads)
        flags = self._verdict(step.loss, grads)
        before = self.counts
        self.counts, live = budget.advance(before, flags > 0, self.limits, self.policy == "stop")
        self.steps = self.counts[0]
        self.halted = not budget.within(*self.counts[1:], self.limits)
        if flags and live:
            loss = float("nan") if step.loss is None else float(step.loss.detach().float().sum())
            self._bad.append(BadStep(before[0], flags, loss, Batch.of(step.data)))
        step.applied = bool(live) and not flags
        if step.applied:
            return self._originals["apply"](grads, trainable_variables)
        return None

    def _verdict(self, loss: Any, grads: list[Any]) -> int:
        """Verdict bits of the step: one device sync when all is finite."""
        present = [g for g in grads if g is not None] if self._check_grads else []
        parts = [n.float() for n in torch._foreach_norm(present)] if present else []
        if loss is not None:
            parts.append(loss.detach().float().sum())
        if not parts or bool(torch.isfinite(torch.stack(parts).sum())):
            return 0
        loss_bad = loss is not None and not bool(torch.isfinite(loss).all())
        grads_bad = any(not bool(torch.isfinite(g).all()) for g in present)
        return loss_bad * budget.LOSS_NONFINITE + grads_bad * budget.GRAD_NONFINITE

    # -- host ----------------------------------------------------------------------------------

    def poll(self) -> list[BadStep]:
        found, self._bad = self._bad, []
        return found

    def last_batch(self) -> Batch | None:
        return Batch.of(self._last.data) if self._last is not None else None
