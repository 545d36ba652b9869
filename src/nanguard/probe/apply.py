"""Skip-on-non-finite: the guarded ``optimizer.apply``.

Per step, in graph (works under ``tf.function``, XLA, ``steps_per_execution > 1``, mixed
precision and ``tf.distribute``):

1. measure: finiteness of the loss and of every gradient, per-variable gradient norms;
2. decide: one "bad" verdict per step, all-reduced so every replica takes the same decision;
3. apply the update only when the step is good and the run is not halted (``tf.cond``, the
   pattern of Keras' own ``LossScaleOptimizer``), so weights and optimizer state keep their
   last finite values;
4. record: weight norms and finiteness after the step, update/weight ratios every
   ``ratio_every`` steps, and the step's row in :class:`~nanguard.probe.state.ProbeState`.

The cheap path is one sum of squares per gradient and per weight (needed for the norms anyway);
the exact element-wise finiteness test runs only when such a sum is not finite, which also
covers huge-but-finite values whose squares overflow.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable, Sequence
from typing import Any

import keras
import tensorflow as tf

from nanguard.probe import state as st
from nanguard.probe import trace
from nanguard.probe.capture import BatchCapture

STOP_MESSAGE = "nanguard: training stopped"


class TrainingStopped(RuntimeError):
    """Raised in an eager hand-written loop when the guard halts it (policy or skip budget)."""


def _all_finite(tensors: Sequence[tf.Tensor]) -> tf.Tensor:
    if not tensors:
        return tf.constant(True)
    return tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(t)) for t in tensors]))


def _finite_given_sums(total: tf.Tensor, tensors: Sequence[tf.Tensor]) -> tf.Tensor:
    """``tensors`` are all finite; ``total`` is their summed squares (finite implies the answer)."""
    return tf.cond(
        tf.math.is_finite(total), lambda: tf.constant(True), lambda: _all_finite(tensors)
    )


def _dense(value: Any) -> tf.Tensor:
    values = value.values if isinstance(value, tf.IndexedSlices) else value
    return tf.convert_to_tensor(values)


def _sumsq(t: tf.Tensor) -> tf.Tensor:
    t = tf.cast(t, tf.float32)
    return tf.reduce_sum(tf.square(t))


def _vector(by_index: dict[int, tf.Tensor], n: int, fill: float) -> tf.Tensor:
    return tf.stack([by_index.get(i, tf.constant(fill, tf.float32)) for i in range(n)])


def _tf_variable(v: Any) -> tf.Variable:
    return v.value if isinstance(v, keras.Variable) else v


def _needs_merge_call() -> bool:
    return tf.distribute.has_strategy() and not (
        tf.__internal__.distribute.strategy_supports_no_merge_call()
    )


class StepProbe:
    """Guards one optimizer: wraps its ``apply`` and owns the :class:`ProbeState` it writes.

    ``raise_on_halt`` is for hand-written loops, where no callback can stop the loop: once the
    guard halts, the step raises (``TrainingStopped`` eagerly, an ``InvalidArgumentError`` carrying
    ``STOP_MESSAGE`` in graph mode; XLA drops asserts, so there the halted loop just no longer
    updates the weights).
    """

    def __init__(
        self,
        optimizer: keras.optimizers.Optimizer,
        policy: str,
        limits: st.Limits,
        *,
        ring: int = 1024,
        ratio_every: int = 25,
        raise_on_halt: bool = False,
        capture: BatchCapture | None = None,
    ) -> None:
        self.optimizer = optimizer
        self.policy = policy
        self.limits = limits
        self.ring = ring
        self.ratio_every = ratio_every
        self.raise_on_halt = raise_on_halt
        self.capture = capture  # hand-written loops: batch kept from the model/loss call hooks
        self.is_scaler = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        self.state: st.ProbeState | None = None
        self.variable_names: list[str] = []
        self._shadows: list[tf.Variable] | None = None
        self._original: Callable[..., Any] = original_apply(optimizer)

    # -- wiring ------------------------------------------------------------------------------

    def attach(self) -> None:
        """Route this optimizer's ``apply`` (and so ``apply_gradients``) through the guard."""
        self.optimizer.apply = types.MethodType(_instance_apply, self.optimizer)
        self.optimizer._nanguard_probe = self

    def detach(self) -> None:
        for attr in ("apply", "_nanguard_probe"):
            self.optimizer.__dict__.pop(attr, None)

    def prepare(self, variables: Sequence[Any] | None = None) -> bool:
        """Build the optimizer and the probe's variables outside any trace. False if impossible."""
        opt = self.optimizer
        if not opt.built:
            if variables is None:
                return False
            with tf.init_scope():
                with keras.name_scope(opt.name, caller=opt):
                    opt.build(list(variables))
                opt.built = True
        if self.state is None:
            with tf.init_scope():
                self._create_state()
                if self.capture is not None:
                    self.capture.prepare()
        return True

    def _create_state(self) -> None:
        variables = list(self.optimizer._trainable_variables)
        self.variable_names = [getattr(v, "path", None) or v.name for v in variables]
        strategy = tf.distribute.get_strategy()
        with strategy.scope() if tf.distribute.has_strategy() else contextlib.nullcontext():
            self.state = st.ProbeState(len(variables), self.ring, self.ratio_every)
        # Update/weight ratios need the pre-step weights; a shadow copy is written only on sampled
        # steps. Skipped under tf.distribute, where it would need mirrored copies of every weight.
        if not tf.distribute.has_strategy() and self.ratio_every > 0:
            self._shadows = [
                tf.Variable(tf.zeros_like(_tf_variable(v)), trainable=False, name="nanguard_shadow")
                for v in variables
            ]

    # -- the guarded step ----------------------------------------------------------------------

    def apply(self, grads: Sequence[Any], trainable_variables: Sequence[Any] | None = None) -> None:
        with trace.inside_guard() as nested:
            grads = list(grads)
            if nested or not grads:
                return self._original(grads, trainable_variables)
            if trainable_variables is not None:
                trainable_variables = list(trainable_variables)
            if not self.prepare(trainable_variables):
                raise ValueError("nanguard: the optimizer has no variables to guard")
            return self._guarded(grads, trainable_variables)

    def _guarded(self, grads: list[Any], tvars: list[Any] | None) -> None:
        opt, state = self.optimizer, self.state
        assert state is not None
        variables = tvars if tvars is not None else list(opt._trainable_variables)
        index = [opt._get_variable_index(v) for v in variables]
        n = state.n_vars

        present = [(i, _dense(g)) for i, g in zip(index, grads, strict=True) if g is not None]
        grad_sq = {i: _sumsq(g) for i, g in present}
        grad_total = tf.add_n(list(grad_sq.values())) if grad_sq else tf.constant(0.0)
        grads_ok = _finite_given_sums(grad_total, [g for _, g in present])

        losses = trace.take_loss()
        loss_ok = _all_finite(losses) if losses else tf.constant(True)
        loss_value = self._unscaled(losses[0]) if losses else tf.constant(float("nan"))

        ctx = trace.current_step()
        label_bad = ctx.label_bad if ctx is not None and ctx.label_bad is not None else False

        local = tf.cast(
            tf.stack([~loss_ok, ~grads_ok, tf.convert_to_tensor(label_bad)]), tf.float32
        )
        replica = tf.distribute.get_replica_context()
        if replica is not None and replica.num_replicas_in_sync > 1:
            # One decision for all replicas; Keras scales each replica's loss by 1/replicas, so
            # the sum is the global loss.
            summed = replica.all_reduce(
                tf.distribute.ReduceOp.SUM, tf.concat([local, [loss_value]], axis=0)
            )
            seen, loss_value = summed[:3] > 0, summed[3]
        else:
            seen = local > 0
        loss_bad, grad_bad, label_bad_all = seen[0], seen[1], seen[2]

        status = state.status.read_value()
        step = status[st.STEP]
        halted = status[st.HALTED] > 0
        # Under a LossScaleOptimizer, non-finite gradients are its business: it skips the step and
        # lowers the scale. Only the loss, the labels, and a scaler stuck on skipping are ours.
        blocking = loss_bad | label_bad_all | (grad_bad & (not self.is_scaler))
        do_apply = ~blocking & ~halted

        sample = tf.constant(False)
        if self._shadows is not None:
            sample = do_apply & tf.equal(step % self.ratio_every, 0)
            tf.cond(sample, lambda: self._copy_shadows(variables, index), lambda: None)

        self._apply_if(do_apply, grads, tvars)

        weight_sq = {i: _sumsq(_tf_variable(v)) for i, v in zip(index, variables, strict=True)}
        weights_ok = _finite_given_sums(
            tf.add_n(list(weight_sq.values())), [_tf_variable(v) for v in variables]
        )
        if self._shadows is not None:
            ratios = tf.cond(
                sample,
                lambda: self._ratios(variables, index, weight_sq),
                lambda: tf.fill([n], float("nan")),
            )
        else:
            ratios = tf.fill([n], float("nan"))

        scaler_skip = grad_bad & do_apply if self.is_scaler else tf.constant(False)
        scaler_run = tf.where(scaler_skip, status[st.SCALER_RUN] + 1, 0)
        scaler_stuck = scaler_run >= self.limits.scaler_patience

        bits = [
            (loss_bad, st.LOSS_NONFINITE),
            (grad_bad & (not self.is_scaler), st.GRAD_NONFINITE),
            (~weights_ok, st.WEIGHT_NONFINITE),
            (label_bad_all, st.LABEL_OUT_OF_RANGE),
            (scaler_skip, st.SCALER_SKIP),
            (scaler_stuck, st.SCALER_STUCK),
        ]
        flags = tf.add_n([tf.where(b, bit, 0) for b, bit in bits])
        bad = tf.not_equal(flags & st.BAD, 0)

        total = status[st.TOTAL_BAD] + tf.cast(bad, tf.int64)
        consecutive = tf.where(bad, status[st.CONSECUTIVE_BAD] + 1, 0)
        halt = (
            halted | (total > self.limits.max_total) | (consecutive > self.limits.max_consecutive)
        )
        if self.policy == "stop":
            halt = halt | bad
        new_status = tf.stack(
            [
                step + 1,
                tf.cast(halt, tf.int64),
                total,
                consecutive,
                tf.where(bad & (status[st.FIRST_BAD] < 0), step, status[st.FIRST_BAD]),
                tf.where(bad, step, status[st.LAST_BAD]),
                scaler_run,
            ]
        )
        state.status.assign(new_status)
        row = tf.cast(step % state.ring, tf.int32)
        state.loss[row].assign(loss_value)
        state.flags[row].assign(flags)
        state.grad_norms[row].assign(tf.sqrt(_vector(grad_sq, n, float("nan"))))
        state.weight_norms[row].assign(tf.sqrt(_vector(weight_sq, n, float("nan"))))
        state.update_ratios[row].assign(ratios)
        slot = tf.cast(status[st.TOTAL_BAD] % st.BAD_LOG, tf.int32)

        def log_bad() -> None:
            state.bad_steps[slot].assign(step)
            state.bad_flags[slot].assign(flags)

        tf.cond(bad, log_bad, lambda: None)

        locally_bad = local[0] + local[1] + local[2] > 0
        if ctx is not None:
            ctx.exports = {"bad": locally_bad, "step": step}
        elif self.capture is not None and not trace.in_xla():
            batch = trace.take_batch()
            if batch is not None:
                self.capture.store(batch, locally_bad, step)
        if self.raise_on_halt:
            self._raise_if_halted(halt, step)

    def _unscaled(self, loss: tf.Tensor) -> tf.Tensor:
        value = tf.cast(tf.reduce_sum(loss), tf.float32)
        if self.is_scaler:
            return value / tf.cast(self.optimizer.dynamic_scale, tf.float32)
        if self.optimizer.loss_scale_factor is not None:
            return value / self.optimizer.loss_scale_factor
        return value

    def _apply_if(self, pred: tf.Tensor, grads: list[Any], tvars: list[Any] | None) -> None:
        original = self._original
        if not _needs_merge_call():
            tf.cond(pred, lambda: original(grads, tvars), lambda: None)
            return

        # As in Keras' LossScaleOptimizer: a cond whose branch calls merge_call must itself run in
        # a cross-replica context. `pred` is the same on every replica (it was all-reduced).
        def cross_replica(distribution: Any, pred: Any, grads: Any, tvars: Any) -> None:
            first = distribution.experimental_local_results(pred)[0]
            tf.cond(
                first,
                lambda: distribution.extended.call_for_each_replica(original, args=(grads, tvars)),
                lambda: None,
            )

        tf.distribute.get_replica_context().merge_call(cross_replica, args=(pred, grads, tvars))

    def _copy_shadows(self, variables: list[Any], index: list[int]) -> None:
        assert self._shadows is not None
        for i, v in zip(index, variables, strict=True):
            self._shadows[i].assign(_tf_variable(v))

    def _ratios(
        self, variables: list[Any], index: list[int], weight_sq: dict[int, tf.Tensor]
    ) -> tf.Tensor:
        assert self._shadows is not None and self.state is not None
        by_index = {}
        for i, v in zip(index, variables, strict=True):
            delta = _sumsq(
                tf.cast(_tf_variable(v), tf.float32) - tf.cast(self._shadows[i], tf.float32)
            )
            by_index[i] = tf.sqrt(delta) / (tf.sqrt(weight_sq[i]) + 1e-12)
        return _vector(by_index, self.state.n_vars, float("nan"))

    def _raise_if_halted(self, halt: tf.Tensor, step: tf.Tensor) -> None:
        if tf.executing_eagerly():
            if bool(halt):
                raise TrainingStopped(f"{STOP_MESSAGE} at step {int(step)}")
            return
        tf.debugging.Assert(~halt, [tf.strings.format(STOP_MESSAGE + " at step {}", step)])


def _instance_apply(optimizer: Any, grads: Any, trainable_variables: Any = None) -> None:
    return optimizer._nanguard_probe.apply(grads, trainable_variables)


_ORIGINAL_APPLY: dict[type, Callable[..., Any]] = {}
_loop_provider: Callable[[Any], StepProbe | None] | None = None


def original_apply(optimizer: Any) -> Callable[..., Any]:
    """The optimizer's own ``apply``, bypassing any nanguard wrapper on its class."""
    for cls in type(optimizer).__mro__:
        if cls in _ORIGINAL_APPLY:
            return types.MethodType(_ORIGINAL_APPLY[cls], optimizer)
        if "apply" in cls.__dict__:
            return types.MethodType(cls.__dict__["apply"], optimizer)
    raise TypeError(f"{type(optimizer).__name__} has no apply method")


def guard_loops(probe_for: Callable[[Any], StepProbe | None] | None) -> None:
    """Guard every Keras optimizer's ``apply`` in hand-written loops, or stop doing so (None).

    ``probe_for(optimizer)`` returns the probe that guards it, creating one on first use, or None
    to leave it alone. Optimizers a ``Guard`` attached to keep their instance wrapper. The class
    wrappers are installed once per process and pass straight through while no one guards.
    """
    global _loop_provider
    _loop_provider = probe_for
    from keras.src.optimizers.base_optimizer import BaseOptimizer

    for cls in (BaseOptimizer, keras.optimizers.LossScaleOptimizer):
        if cls in _ORIGINAL_APPLY:
            continue
        _ORIGINAL_APPLY[cls] = original = cls.__dict__["apply"]

        def apply(
            self: Any, grads: Any, trainable_variables: Any = None, _orig: Any = original
        ) -> Any:
            provider = _loop_provider
            probe = None if provider is None or trace.inside() else provider(self)
            if probe is None:
                return _orig(self, grads, trainable_variables)
            return probe.apply(grads, trainable_variables)

        apply.__doc__ = original.__doc__
        cls.apply = apply
