"""Skip-on-non-finite: the guarded ``optimizer.apply``.

Per step, in graph (works under ``tf.function``, XLA, ``steps_per_execution > 1``, mixed
precision and ``tf.distribute``):

1. measure: finiteness of the loss and of every gradient, and per-variable gradient norms;
2. decide: one "bad" verdict per step, all-reduced (with the gradients, in one collective) so
   every replica takes the same decision;
3. apply the update only when the step is good and the run is not halted (``tf.cond``, the
   pattern of Keras' own ``LossScaleOptimizer``), so weights and optimizer state keep their
   last finite values;
4. record: the step's row (loss, verdicts, gradient norms) and the status the host polls.

On CPU a step pays per op more than per byte, and a ``tf.cond`` pays per tensor it captures, so
the graph added per step is kept small: one fused ``l2_loss`` per gradient (the norms are needed
anyway; the exact element-wise test runs only when their total is not finite, which also covers
huge-but-finite values whose squares overflow), a handful of scalar ops, one write to the status
and one to the ring. Weight norms and update/weight ratios are measured by the host on sampled
steps (see :mod:`nanguard.guard.recorder`), not in the step.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Sequence
from typing import Any

import keras
import tensorflow as tf

from nanguard.heal.controls import HealControls
from nanguard.probe import state as st
from nanguard.probe import trace
from nanguard.probe.capture import BatchCapture
from nanguard.probe.halt import STOP_MESSAGE, TrainingStopped
from nanguard.probe.weights import WeightSampler

# Which of the verdicts [loss, gradients, labels] block a LossScaleOptimizer's update (a list:
# a tensor made at import would start TensorFlow's runtime before the user's script could
# configure its devices under `nanguard run`).
_SCALER_MASK = [True, False, True]


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


def _half_sumsq(t: tf.Tensor) -> tf.Tensor:
    """Half the summed squares (one fused kernel); the factor 2 is applied on the host."""
    return tf.nn.l2_loss(tf.cast(t, tf.float32))


def _vector(by_index: dict[int, tf.Tensor], n: int) -> tf.Tensor:
    return tf.stack([by_index.get(i, tf.constant(0.0)) for i in range(n)])


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
        raise_on_halt: bool = False,
        capture: BatchCapture | None = None,
    ) -> None:
        self.optimizer = optimizer
        self.policy = policy
        self.limits = limits
        self.ring = ring
        self.raise_on_halt = raise_on_halt
        self.capture = capture  # hand-written loops: batch kept from the model/loss call hooks
        self.controls: HealControls | None = None  # policy "heal": see nanguard.heal.controls
        # A bad step halts the graph under "stop", and under "heal" in fit, where it is a pause:
        # no update until the host has healed and resumed (in a hand-written loop no host runs
        # between steps, so heal skips there as "skip" does).
        self._pauses = policy == "stop" or (policy == "heal" and not raise_on_halt)
        self.is_scaler = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        self.state: st.ProbeState | None = None
        self.failed = False  # building the guarded step failed once: pass straight through
        self._passed = False  # this (eager) call got as far as the update
        self.variable_names: list[str] = []
        self._sampler: WeightSampler | None = None
        self._reduced: set[Any] = set()  # refs of gradients summed over replicas (see _all_reduce)
        self._original: Callable[..., Any] = original_apply(optimizer)

    # -- wiring ------------------------------------------------------------------------------

    def attach(self) -> None:
        """Route this optimizer's ``apply`` (and so ``apply_gradients``) through the guard."""
        self.optimizer.apply = types.MethodType(_instance_apply, self.optimizer)
        self.optimizer._nanguard_probe = self

    def detach(self) -> None:
        for attr in ("apply", "_nanguard_probe", "_all_reduce_sum_gradients"):
            self.optimizer.__dict__.pop(attr, None)

    def weight_sampler(self) -> WeightSampler:
        """The host's reader of this optimizer's weights (see :class:`~.weights.WeightSampler`)."""
        variables = self.optimizer._trainable_variables
        if self._sampler is None or not self._sampler.matches(variables):
            self._sampler = WeightSampler(variables)
        return self._sampler

    def prepare(self, variables: Sequence[Any] | None = None) -> bool:
        """Build the optimizer and the probe's variables outside any trace. False if impossible."""
        opt = self.optimizer
        if not opt.built:
            if not variables:
                return False
            with tf.init_scope():
                with keras.name_scope(opt.name, caller=opt):
                    opt.build(list(variables))
                opt.built = True
        if self.state is None:
            if tf.distribute.has_strategy() and not tf.distribute.in_cross_replica_context():
                # Traced inside ``strategy.run`` (a hand-written loop): the variables are made
                # once, where every replica meets.
                tf.distribute.get_replica_context().merge_call(lambda _: self._create_state())
            else:
                self._create_state()
        return True

    def _strategy(self) -> tf.distribute.Strategy:
        """The optimizer's strategy, not the current one: under ``tf.init_scope`` (in a trace) or
        in a callback there is none."""
        return getattr(self.optimizer, "_distribution_strategy", None) or (
            tf.distribute.get_strategy()
        )

    def _create_state(self) -> None:
        variables = list(self.optimizer._trainable_variables)
        self.variable_names = [getattr(v, "path", None) or v.name for v in variables]
        strategy = self._strategy()
        with tf.init_scope(), st.per_replica_scope(strategy):
            self.state = st.ProbeState(len(variables), self.ring)
            if self.policy == "heal":
                self.controls = HealControls()
        if self.capture is not None:
            self.capture.prepare(strategy)

    # -- the guarded step ----------------------------------------------------------------------

    def apply(self, grads: Sequence[Any], trainable_variables: Sequence[Any] | None = None) -> None:
        with trace.inside_guard() as nested:
            grads = list(grads)
            if nested or not grads:
                return self._original(grads, trainable_variables)
            if trainable_variables is not None:
                trainable_variables = list(trainable_variables)
            try:
                ready = not self.failed and self.prepare(trainable_variables)
            except Exception as exc:  # the guard must never break the training it protects
                self._give_up(exc)
                ready = False
            if not ready:
                return self._original(grads, trainable_variables)
            self._passed = False
            try:
                return self._guarded(grads, trainable_variables)
            except TrainingStopped:
                raise
            except Exception as exc:
                self._give_up(exc)
                if not self._passed:  # eagerly, the update may already have been applied
                    return self._original(grads, trainable_variables)
                return None

    def _give_up(self, exc: Exception) -> None:
        self.failed = True
        print(
            f"nanguard: cannot guard {type(self.optimizer).__name__} "
            f"({type(exc).__name__}: {exc}); training goes on unguarded",
            file=sys.stderr,
        )

    def _guarded(self, grads: list[Any], tvars: list[Any] | None) -> None:
        opt, state, limits = self.optimizer, self.state, self.limits
        assert state is not None
        variables = tvars if tvars is not None else list(opt._trainable_variables)
        index = [opt._get_variable_index(v) for v in variables]

        present = [(i, _dense(g)) for i, g in zip(index, grads, strict=True) if g is not None]
        grad_sq = _vector({i: _half_sumsq(g) for i, g in present}, state.n_vars)
        grads_ok = _finite_given_sums(tf.reduce_sum(grad_sq), [g for _, g in present])
        losses = trace.take_loss()
        loss_value = self._loss_value(losses) if losses else tf.constant(float("nan"))
        loss_bad = ~tf.math.is_finite(loss_value) if losses else False
        ctx = trace.current_step()
        label_bad = ctx.label_bad if ctx is not None else trace.take_label_verdict()
        if label_bad is None:
            label_bad = False
        # Quarantine left no sample in this batch: no update, and nothing bad to count.
        empty = ctx.empty if ctx is not None and ctx.empty is not None else tf.constant(False)

        # [loss, gradients, labels] bad here; under tf.distribute, on any replica.
        local = tf.stack([loss_bad, ~grads_ok, label_bad]) & ~empty
        if self.controls is not None and not self.is_scaler:
            grads = self.controls.clip(grads, grad_sq)
        replica = tf.distribute.get_replica_context()
        reduced = None
        if replica is not None and replica.num_replicas_in_sync > 1:
            # Keras scales each replica's loss by 1/replicas, so the sum is the global loss. An
            # empty share (its gradients are 0/0) blocks every replica's update.
            verdict = tf.concat(
                [tf.cast(local, tf.float32), [loss_value, tf.cast(empty, tf.float32)]], axis=0
            )
            reduced, summed = self._all_reduce(replica, grads, verdict)
            seen, loss_value, empty = summed[:3] > 0, summed[3], summed[4] > 0
        else:
            seen = local
        # Under a LossScaleOptimizer, non-finite gradients are its business: it skips the step and
        # lowers the scale. Only the loss, the labels, and a scaler stuck on skipping are ours.
        blocking = self._blocking(seen)

        # Once halted (a stop, or the skip budget spent: checked against the counts before this
        # step) a step is dead: no update, and neither counted nor recorded (its row goes to the
        # ring's spare last slot).
        status = state.status.read_value()
        step = status[st.STEP]
        live = self._within_budget(status)
        do_apply = live & ~blocking & ~empty
        self._apply_if(do_apply, grads if reduced is None else reduced, tvars)
        self._reduced.difference_update(g.ref() for g in reduced or () if g is not None)

        alive = tf.cast(live, tf.int64)
        if self.is_scaler:
            skipped = tf.cast(seen[1] & do_apply, tf.int64)
            run = (status[st.SCALER_RUN] + 1) * skipped
            bad = tf.cast(blocking | (run >= limits.scaler_patience), tf.int64) * alive
        else:
            run = tf.constant(0, tf.int64)
            bad = tf.cast(blocking, tf.int64) * alive
        halt = status[st.HALTED] + bad * int(self._pauses)
        total = status[st.TOTAL_BAD] + bad
        dead = (1 - alive) * status  # a dead step leaves the counts as they were
        consecutive = (status[st.CONSECUTIVE_BAD] + 1) * bad + dead[st.CONSECUTIVE_BAD]
        run = run + dead[st.SCALER_RUN]
        state.status.assign(tf.stack([step + alive, halt, total, consecutive, run]))
        row = [[tf.cast(loss_value, tf.float32)], tf.cast(seen, tf.float32)]
        row += [[tf.cast(run, tf.float32)], grad_sq]
        state.rows[tf.where(live, step % state.ring, state.ring)].assign(tf.concat(row, 0))

        locally_bad = self._blocking(local) & live  # this replica's batch is worth keeping
        anywhere = blocking & live  # ... or, across workers, the global batch (see capture)
        if ctx is not None:
            ctx.exports = {
                "bad": locally_bad,
                "anywhere": anywhere,
                "step": step,
                "applied": do_apply,
            }
        elif self.capture is not None and not trace.in_xla():
            batch = trace.take_batch()
            if batch is not None:
                self.capture.store(batch, locally_bad, step, anywhere)
        if self.raise_on_halt:
            self._raise_if_halted(state.status.read_value(), step)

    def _all_reduce(
        self, replica: Any, grads: list[Any], verdict: tf.Tensor
    ) -> tuple[list[Any] | None, tf.Tensor]:
        """(the gradients summed over replicas, or None; the verdicts summed).

        Keras sums the gradients over replicas inside the update, which here runs under the
        guard's ``tf.cond``, so after the verdicts' own all-reduce: two collectives in a row per
        step, the second unable to start before the first ended. Where Keras would sum the
        gradients unchanged (no clipping, scaling or accumulation before its sum), both go into
        one collective here, and the update is told they are summed already (on the 7 ms MLP
        step of ``benchmarks/distributed_overhead.py`` the second collective cost ~10%).
        """
        opt = self.optimizer
        fusable = (
            not self.is_scaler
            and hasattr(opt, "_all_reduce_sum_gradients")
            and not opt.gradient_accumulation_steps
            and opt.clipnorm is None
            and opt.clipvalue is None
            and opt.global_clipnorm is None
            and opt.loss_scale_factor is None
            and not any(
                getattr(v, "overwrite_with_gradient", False) for v in opt._trainable_variables
            )
            and not any(isinstance(g, tf.IndexedSlices) for g in grads)
        )
        if not fusable:
            return None, replica.all_reduce(tf.distribute.ReduceOp.SUM, verdict)
        if "_all_reduce_sum_gradients" not in opt.__dict__:
            opt.__dict__["_all_reduce_sum_gradients"] = self._sum_unless_summed
        dense = [g for g in grads if g is not None]
        out = replica.all_reduce(tf.distribute.ReduceOp.SUM, [*dense, verdict])
        rest = iter(out[:-1])
        reduced = [None if g is None else next(rest) for g in grads]
        self._reduced.update(g.ref() for g in reduced if g is not None)
        return reduced, out[-1]

    def _sum_unless_summed(self, grads_and_vars: Any) -> list[Any]:
        """The optimizer's gradient all-reduce, skipped for gradients :meth:`_all_reduce` summed."""
        pairs = list(grads_and_vars)
        present = [g for g, _ in pairs if g is not None]
        summed = [g.ref() in self._reduced for g in present]
        if all(summed):
            return pairs
        if any(summed):  # never sum a gradient twice
            raise RuntimeError("the update mixed summed and unsummed gradients")
        return type(self.optimizer)._all_reduce_sum_gradients(self.optimizer, pairs)

    def _blocking(self, verdicts: tf.Tensor) -> tf.Tensor:
        return tf.reduce_any(verdicts & _SCALER_MASK) if self.is_scaler else tf.reduce_any(verdicts)

    def _within_budget(self, status: tf.Tensor) -> tf.Tensor:
        """Graph side of :func:`~nanguard.probe.state.halted`, negated."""
        budget = tf.constant(self.limits.budget, dtype=tf.int64)
        return tf.reduce_all(status[st.HALTED : st.CONSECUTIVE_BAD + 1] <= budget)

    def _loss_value(self, losses: list[Any]) -> tf.Tensor:
        """The step's loss as the user sees it (loss scaling undone); non-finite if any part is."""
        value = tf.cast(tf.add_n([tf.reduce_sum(loss) for loss in losses]), tf.float32)
        if self.is_scaler:
            return value / tf.cast(self.optimizer.dynamic_scale, tf.float32)
        if self.optimizer.loss_scale_factor is not None:
            return value / self.optimizer.loss_scale_factor
        return value

    def _apply_if(self, pred: tf.Tensor, grads: list[Any], tvars: list[Any] | None) -> None:
        if self.controls is None:
            return self._apply_when(pred, grads, tvars)
        with self.controls.scaled_learning_rate(self.optimizer):
            return self._apply_when(pred, grads, tvars)

    def _apply_when(self, pred: tf.Tensor, grads: list[Any], tvars: list[Any] | None) -> None:
        original = self._original
        if not _needs_merge_call():
            tf.cond(pred, lambda: original(grads, tvars), lambda: None)
            self._passed = tf.executing_eagerly()
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

    def _raise_if_halted(self, status: tf.Tensor, step: tf.Tensor) -> None:
        halt = ~self._within_budget(status)
        if tf.executing_eagerly():
            if bool(halt):
                raise TrainingStopped(f"{STOP_MESSAGE} at step {int(step)}")
            return
        if trace.in_xla():
            return  # XLA cannot raise from a step
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
    trace.guard_loop_labels(probe_for is not None)
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
