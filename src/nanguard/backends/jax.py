"""The guard on Keras' JAX backend: a bad step's new state is never kept.

Keras' JAX trainer is functional: ``train_step(state, data) -> (logs, state)``, jitted, with the
state (trainable, non-trainable, optimizer and metrics variables) threaded through by ``fit``.
The guard runs its own train function around the model's ``train_step``, jitted the same way:

- the step's verdict, in the same jitted function: the loss (taken where the trainer hands it to
  the metrics, outside the gradient trace), every gradient (taken in the optimizer's
  ``stateless_apply``; left to a ``LossScaleOptimizer``, whose own skips are normal) and every
  new trainable variable must be finite;
- the new state is ``where(applied, new, old)``, leaf by leaf: a bad step, or any step once the
  run has halted, leaves weights, optimizer state, BatchNormalization statistics (moved by the
  forward pass) and the metrics (so Keras' epoch loss stays the mean of the applied steps)
  exactly as they were;
- the guard's counters and a log of the bad steps live in small device arrays returned by each
  step. The host never waits for them on a healthy step: ``on_train_batch_end`` (which Keras may
  then run on a worker thread) reads them every ``poll_interval`` seconds, and the in-graph halt
  makes the steps run before the host sees a ``stop`` into no-ops.

The batches of the steps not yet polled are held by reference (no copy; the newest
``MAX_HELD_BYTES`` of them) so that a bad step's batch can be diagnosed.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import keras
import numpy as np

from nanguard.backends import budget
from nanguard.backends.diagnosis import Batch
from nanguard.backends.host import BadStep

MAX_HELD_BYTES = 256 << 20  # batches held for diagnosis between two polls
MAX_LOGGED = 1024  # bad steps logged on the device between two polls


@dataclass
class _Probe:
    """What the step being traced hands over from inside the trainer's ``train_step``."""

    loss: Any = None
    grads_ok: Any = None


_ACTIVE: list[_Probe] = []  # the guarded step being traced or run, innermost last


def _all_finite(arrays: Any) -> jax.Array:
    checks = [
        jnp.isfinite(a).all()
        for a in jax.tree.leaves(arrays)
        if jnp.issubdtype(jnp.result_type(a), jnp.inexact)
    ]
    return jnp.stack(checks).all() if checks else jnp.array(True)


class JaxEngine:
    async_safe = True
    weights_live = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cached: tuple[tuple[Any, ...], Callable[..., Any]] | None = None
        self._patched: list[tuple[Any, str]] = []
        self.model: keras.Model | None = None
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
        if keras.distribution.distribution() is not None:
            raise NotImplementedError("nanguard cannot guard a keras.distribution run on JAX")
        optimizer = model.optimizer
        check_grads = not isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        self._patch(optimizer, "stateless_apply", _checking_grads, check_grads)
        if hasattr(model, "_update_metrics_variables"):
            self._patch(model, "_update_metrics_variables", _taking_loss)
        self.model, self.on_error = model, on_error
        self.policy, self.limits = policy, limits
        self.ring = min(limits.max_total + 1, MAX_LOGGED)
        self._step = self._guarded_step(model)
        self._plain = model.train_function
        model.train_function = self._train_function
        self._state = {
            "counts": jnp.zeros(4, jnp.int32),
            "steps": jnp.zeros(self.ring, jnp.int32),
            "flags": jnp.zeros(self.ring, jnp.int32),
            "loss": jnp.zeros(self.ring, jnp.float32),
        }
        self._held: deque[tuple[int, Any, int]] = deque()  # (host step, data, bytes)
        self._held_bytes = 0
        self.host_steps = self.steps = self._seen = 0
        self.halted = False

    def _patch(self, owner: Any, name: str, wrap: Callable[..., Any], *args: Any) -> None:
        """Shadow ``owner.name`` with an instance attribute, popped again by ``restore``."""
        setattr(owner, name, wrap(getattr(owner, name), *args))
        self._patched.append((owner, name))

    def restore(self) -> None:
        for owner, name in self._patched:
            owner.__dict__.pop(name, None)
        self._patched = []
        if self.model is not None and self.model.train_function == self._train_function:
            self.model.train_function = self._plain

    # -- the guarded step ----------------------------------------------------------------------

    def _guarded_step(self, model: keras.Model) -> Callable[..., Any]:
        """The jitted guarded step, kept across ``fit`` calls until the model is recompiled."""
        key = (model, getattr(model, "_compile_config", None), model.optimizer, model.jit_compile)
        key += (model.run_eagerly, self.policy, self.limits.max_total, self.limits.max_consecutive)
        if self._cached is not None and all(
            a is b or a == b for a, b in zip(self._cached[0], key, strict=True)
        ):
            return self._cached[1]
        train_step, limits, ring = model.train_step, self.limits, self.ring
        stop = self.policy == "stop"

        def step(state: Any, guard: dict[str, Any], data: Any) -> tuple[Any, Any, dict[str, Any]]:
            probe = _Probe()
            _ACTIVE.append(probe)
            try:
                logs, new_state = train_step(state, data)
            finally:
                _ACTIVE.pop()
            loss = probe.loss
            if loss is None and isinstance(logs, dict):  # a custom train_step: its logged loss
                loss = logs.get("loss")
            loss_bad = ~_all_finite(loss) if loss is not None else jnp.array(False)
            grads_bad = ~probe.grads_ok if probe.grads_ok is not None else jnp.array(False)
            flags = (
                loss_bad * budget.LOSS_NONFINITE
                + grads_bad * budget.GRAD_NONFINITE
                + ~_all_finite(new_state[0]) * budget.WEIGHT_NONFINITE
            ).astype(jnp.int32)
            bad = flags > 0
            counts = guard["counts"]
            new_counts, live = budget.advance(tuple(counts), bad, limits, stop)
            applied = live & ~bad
            kept = jax.tree.map(lambda old, new: jnp.where(applied, new, old), state, new_state)
            slot, logged = counts[2] % ring, bad & live

            def log(name: str, value: Any) -> jax.Array:
                column = guard[name]
                return column.at[slot].set(jnp.where(logged, value, column[slot]))

            loss_value = jnp.asarray(loss if loss is not None else jnp.nan, jnp.float32)
            return (
                logs,
                kept,
                {
                    "counts": jnp.stack(new_counts).astype(jnp.int32),
                    "steps": log("steps", counts[0]),
                    "flags": log("flags", flags),
                    "loss": log("loss", jnp.sum(loss_value)),
                },
            )

        if not model.run_eagerly and model.jit_compile:
            step = jax.jit(step, donate_argnums=0)
        self._cached = (key, step)
        return step

    def _train_function(self, state: Any, iterator: Any) -> tuple[Any, Any]:
        """Keras' train function, guarded: ``steps_per_execution`` steps, then the state."""
        try:
            guard = self._state
            logs = None
            for i in range(max(1, self.model.steps_per_execution)):
                try:
                    data = next(iterator)
                except StopIteration:
                    if i == 0:
                        raise
                    break
                self._hold(data)
                logs, state, guard = self._step(state, guard, data)
                with self._lock:
                    self._state = guard
            return logs, state
        except StopIteration:
            raise
        except Exception as exc:
            self.on_error(exc)
            raise

    def _hold(self, data: Any) -> None:
        size = sum(getattr(leaf, "nbytes", 0) for leaf in jax.tree.leaves(data))
        with self._lock:
            self._held.append((self.host_steps, data, size))
            self._held_bytes += size
            self.host_steps += 1
            while self._held_bytes > MAX_HELD_BYTES and len(self._held) > 1:
                self._held_bytes -= self._held.popleft()[2]

    # -- host ----------------------------------------------------------------------------------

    def poll(self) -> list[BadStep]:
        """New bad steps since the last poll (waits for the steps dispatched so far)."""
        with self._lock:
            guard = self._state
            held = {step: data for step, data, _ in self._held}
        step, halted, total, consecutive = np.asarray(guard["counts"]).tolist()
        found = []
        if total > self._seen:
            steps, flags, losses = (np.asarray(guard[k]) for k in ("steps", "flags", "loss"))
            for slot in (n % self.ring for n in range(max(self._seen, total - self.ring), total)):
                data = held.get(int(steps[slot]))
                batch = Batch.of(data) if data is not None else None
                found.append(
                    BadStep(int(steps[slot]), int(flags[slot]), float(losses[slot]), batch)
                )
            self._seen = total
        self.steps = step
        self.halted = not budget.within(halted, total, consecutive, self.limits)
        with self._lock:
            while self._held and (self.halted or self._held[0][0] < step):
                self._held_bytes -= self._held.popleft()[2]
        return found

    def last_batch(self) -> Batch | None:
        with self._lock:
            return Batch.of(self._held[-1][1]) if self._held else None


def _checking_grads(original: Callable[..., Any], check: bool) -> Callable[..., Any]:
    def stateless_apply(optimizer_variables: Any, grads: Any, trainable_variables: Any) -> Any:
        if _ACTIVE and check:
            _ACTIVE[-1].grads_ok = _all_finite([g for g in grads if g is not None])
        return original(optimizer_variables, grads, trainable_variables)

    return stateless_apply


def _taking_loss(original: Callable[..., Any]) -> Callable[..., Any]:
    def update_metrics_variables(metrics_variables: Any, unscaled_loss: Any, *args: Any) -> Any:
        if _ACTIVE:
            _ACTIVE[-1].loss = unscaled_loss
        return original(metrics_variables, unscaled_loss, *args)

    return update_metrics_variables
