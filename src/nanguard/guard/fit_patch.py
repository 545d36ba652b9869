"""Route one model's ``fit`` through the guard, and undo it afterwards.

Three instance attributes are set for the duration of a training run and removed after it.
Both train functions, Keras' own and the guarded one, are kept across runs (until the model is
compiled again), so alternating guarded and unguarded ``fit`` calls never retraces:

- ``train_step``: opens the trace context, runs the model's own ``train_step`` and stores the
  batch when the step was bad. With ``jit_compile=True`` the model's step (and the guard's
  probes) still run under XLA, in an inner ``tf.function``; only the batch capture runs outside.
- ``compute_loss``: for sparse categorical losses, checks labels against the output units in
  graph *before* the loss op, which would raise on CPU and silently give NaN on GPU/XLA
  (:mod:`nanguard.probe.labels`).
- the optimizer's ``apply`` (see :class:`~nanguard.probe.apply.StepProbe`).
"""

from __future__ import annotations

import sys
from typing import Any

import keras
import tensorflow as tf

from nanguard.diagnose.losses import sparse_label_loss
from nanguard.probe import trace
from nanguard.probe.apply import StepProbe
from nanguard.probe.capture import BatchCapture
from nanguard.probe.labels import check_labels


def batch_statistics(model: keras.Model) -> list[Any]:
    """The moving statistics of the model's batch-normalization layers: state that a training
    step's forward pass updates outside the optimizer. Under tf.distribute (one worker or several)
    Keras keeps them per replica (aggregation "none": each replica assigns its own copy, with no
    collective), so each replica can put its own back in a plain ``tf.cond``, and must: the
    replica that saw a NaN record would otherwise keep NaN statistics. An aggregated variable is
    left alone, since its replica-context assign is a ``merge_call``, which no cond can hold."""
    return [
        variable
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, keras.layers.BatchNormalization)
        for variable in (layer.moving_mean, layer.moving_variance)
        if variable.aggregation == "none"
    ]


def multi_worker(model: keras.Model) -> bool:
    """Trained by several worker processes (MultiWorkerMirroredStrategy). Their steps meet in
    collectives, so every worker's host must end ``fit`` after the same batch: a worker that
    stopped one batch earlier would leave the others waiting in the next step's all-reduce."""
    strategy = getattr(model, "distribute_strategy", None)
    extended = getattr(strategy, "extended", None)
    return bool(extended is not None and extended._in_multi_worker_mode())


class FitPatch:
    def __init__(self, model: keras.Model, probe: StepProbe, capture: BatchCapture) -> None:
        self.model = model
        self.probe = probe
        self.capture = capture
        self.installed = False
        self.lockstep = False  # several workers train: their hosts must poll after every batch
        self._capture_failed = False
        self._compiled: object = None  # the compile the kept train functions belong to
        self._plain_function: Any = None
        self._guarded_function: Any = None
        self._inner: Any = None  # under jit_compile: the model's step plus the probes, in XLA

    def install(self) -> None:
        if self.installed:
            return
        model = self.model
        compiled = getattr(model, "_compile_config", None)
        if compiled is None or compiled is not self._compiled:
            self._guarded_function = None
        self._compiled = compiled
        self._plain_function = model.train_function
        self._jit = bool(model.jit_compile) and not model.run_eagerly
        self._original_step = model.train_step
        self._original_compute_loss = model.compute_loss
        self._sparse, self._ignore_class = sparse_label_loss(model)
        self._statistics = batch_statistics(model)
        self.lockstep = multi_worker(model)
        model.train_step = self._train_step
        model.compute_loss = self._compute_loss
        if self._guarded_function is None:  # new compile: a new inner XLA function too
            self._inner = (
                tf.function(self._inner_step, jit_compile=True, reduce_retracing=True)
                if self._jit
                else None
            )
        if self._jit:
            model.jit_compile = False
        self.probe.attach()
        model.train_function = self._guarded_function
        self.installed = True

    def retrace(self) -> None:
        """Build the train function anew (mid-``fit``: Keras calls ``model.train_function``
        afresh each step), for a change a traced step cannot see, such as a layer's dtype."""
        model = self.model
        if self._jit:
            self._inner = tf.function(self._inner_step, jit_compile=True, reduce_retracing=True)
        model.train_function = None
        model.make_train_function()

    def restore(self) -> None:
        if not self.installed:
            return
        model = self.model
        for attr in ("train_step", "compute_loss"):
            model.__dict__.pop(attr, None)
        if self._jit:
            model.jit_compile = True
        self.probe.detach()
        function = model.train_function
        self._guarded_function = getattr(function, "__wrapped__", function)
        model.train_function = self._plain_function
        self.installed = False

    def _train_step(self, data: Any) -> Any:
        with trace.step_context() as ctx:
            controls = self.probe.controls
            if controls is not None:  # policy "heal": drop quarantined samples first
                data, ctx.empty = controls.filter_batch(data)
            if self._inner is not None:
                logs, exports = self._inner(data)
            else:
                logs, exports = self._step_keeping_statistics(data), ctx.exports
        if exports and not self._capture_failed:
            try:
                self.capture.store(data, exports["bad"], exports["step"], exports["anywhere"])
            except Exception as exc:  # diagnosis loses the batch; training must not suffer
                self._capture_failed = True
                print(f"nanguard: cannot keep this model's batches ({exc})", file=sys.stderr)
        return logs

    def _step_keeping_statistics(self, data: Any) -> Any:
        """The model's own step; when the guard blocks its update, the batch statistics that
        its forward pass moved (BatchNormalization's moving mean and variance, which a NaN batch
        would make NaN) are put back too, so a skipped step leaves no trace in the model."""
        kept = self._statistics
        saved = [tf.identity(v.value) for v in kept]  # read now, before the forward pass
        logs = self._original_step(data)
        ctx = trace.current_step()
        applied = ctx.exports.get("applied") if ctx is not None else None
        if kept and applied is not None:
            tf.cond(
                applied,
                tf.no_op,
                lambda: tf.group(*[v.assign(s) for v, s in zip(kept, saved, strict=True)]),
            )
        return logs

    def _inner_step(self, data: Any) -> tuple[Any, dict[str, Any]]:
        logs = self._step_keeping_statistics(data)
        ctx = trace.current_step()
        return logs, dict(ctx.exports) if ctx is not None else {}

    def _compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: Any = None,
        sample_weight: Any = None,
        **kwargs: Any,
    ) -> Any:
        ctx = trace.current_step()
        if (
            ctx is not None
            and self._sparse
            and isinstance(y, tf.Tensor)
            and isinstance(y_pred, tf.Tensor)
        ):
            y, ctx.label_bad = check_labels(y, y_pred, self._ignore_class)
        return self._original_compute_loss(x, y, y_pred, sample_weight, **kwargs)
