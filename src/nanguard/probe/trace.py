"""Trace-time bookkeeping that ties a training step's loss and batch to its optimizer update.

The guard decides in graph, inside ``optimizer.apply``, whether a step may update the weights.
At that point the optimizer sees the gradients but not the loss they came from, nor the batch.
Both are recorded here while the step is traced (or run eagerly):

- ``GradientTape.gradient`` is wrapped once per process to remember its target (the loss);
- the guarded ``train_step`` of ``fit`` opens a :class:`StepContext` that holds the label check
  and receives what ``apply`` exports (the local "this step is bad" flag) for batch capture.

Only Python references to symbolic (or eager) tensors are kept; nothing runs per step.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import keras
import tensorflow as tf

_local = threading.local()
# What hand-written loops called (for the replay of their incidents): outermost models (weakly,
# so nanguard keeps no model alive), and the last Keras loss object (a loop may create it inside
# its step function, so it is held).
_models: weakref.WeakSet[Any] = weakref.WeakSet()
_last_loss: list[Any] = []
_loops_guarded = [False]


@dataclass
class StepContext:
    """What one traced ``train_step`` knows beyond the optimizer's view."""

    label_bad: Any = None  # scalar bool tensor: a sparse label outside [0, num_classes)
    empty: Any = None  # scalar bool tensor: the heal policy's quarantine left no sample
    exports: dict[str, Any] = field(default_factory=dict)


def _graph_key() -> object:
    return "eager" if tf.executing_eagerly() else tf.compat.v1.get_default_graph()


def _record_target(target: Any) -> None:
    tensors = [t for t in tf.nest.flatten(target) if isinstance(t, tf.Tensor | tf.Variable)]
    if tensors:
        _local.last_target = (_graph_key(), tensors)


def take_loss() -> list[Any] | None:
    """The tensors last differentiated in the current graph (the step's loss), if any."""
    recorded = getattr(_local, "last_target", None)
    if recorded is None or recorded[0] is not _graph_key():
        return None
    _local.last_target = None
    return recorded[1]


def install_tape_hook() -> None:
    """Wrap ``tf.GradientTape.gradient`` (idempotent) so the guard can see each step's loss."""
    tape_cls = tf.GradientTape
    if getattr(tape_cls.gradient, "_nanguard", False):
        return
    original = tape_cls.gradient

    def gradient(self: Any, target: Any, sources: Any, *args: Any, **kwargs: Any) -> Any:
        _record_target(target)
        return original(self, target, sources, *args, **kwargs)

    gradient._nanguard = True  # type: ignore[attr-defined]
    gradient.__wrapped__ = original  # type: ignore[attr-defined]
    gradient.__doc__ = original.__doc__
    tape_cls.gradient = gradient


def install_call_hooks() -> None:
    """Remember the outermost model call's inputs and a Keras loss's targets (hand-written loops).

    A hand-written loop hands the optimizer nothing but gradients; these two hooks let the guard
    keep the batch that produced them (idempotent; one Python call per model or loss call).
    """
    _hook(keras.Model, "__call__", _model_call)
    _hook(keras.losses.Loss, "__call__", _loss_call)


def _hook(cls: type, name: str, make: Any) -> None:
    original = cls.__dict__.get(name) or getattr(cls, name)
    if getattr(original, "_nanguard", False):
        return
    wrapper = make(original)
    wrapper._nanguard = True
    wrapper.__wrapped__ = original
    wrapper.__doc__ = original.__doc__
    setattr(cls, name, wrapper)


def _model_call(original: Any) -> Any:
    def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
        depth = getattr(_local, "model_depth", 0)
        if depth == 0:
            _models.add(self)
            inputs = args[0] if args else kwargs.get("inputs")
            if inputs is not None:
                _local.last_inputs = (_graph_key(), inputs)
        _local.model_depth = depth + 1
        try:
            return original(self, *args, **kwargs)
        finally:
            _local.model_depth = depth

    return __call__


def _loss_call(original: Any) -> Any:
    def __call__(self: Any, y_true: Any, *args: Any, **kwargs: Any) -> Any:
        # The targets belong with the model call before them (see take_batch).
        _local.last_targets = (_graph_key(), y_true, getattr(_local, "last_inputs", None))
        _last_loss[:] = [self]
        y_pred = args[0] if args else kwargs.get("y_pred")
        bad = None
        if _loops_guarded[0] and current_step() is None and y_pred is not None:
            y_true, bad = _checked_labels(self, y_true, y_pred)
        loss = original(self, y_true, *args, **kwargs)
        if bad is not None:  # the step's loss is NaN, as it would be on a GPU
            loss = tf.where(bad, tf.constant(float("nan"), loss.dtype), loss)
        return loss

    return __call__


def _checked_labels(loss: Any, y_true: Any, y_pred: Any) -> tuple[Any, Any]:
    """In a guarded hand-written loop, labels of a sparse categorical loss are checked before the
    loss op, as ``fit``'s are: (labels made safe for the op, whether any was out of range), the
    verdict also left for the step's ``apply``. The loss op would raise on CPU and give NaN on a
    GPU; this way every device gives a NaN loss that the guard names."""
    from nanguard.diagnose.losses import sparse_label_loss
    from nanguard.probe.labels import check_labels

    sparse, ignore = sparse_label_loss(loss)
    if not sparse:
        return y_true, None
    y_true = tf.convert_to_tensor(y_true)
    safe, bad = check_labels(y_true, tf.convert_to_tensor(y_pred), ignore)
    _local.label_bad = (_graph_key(), bad)
    return safe, bad


def take_label_verdict() -> Any:
    """Whether a label of the current graph's last sparse loss call was out of range, if known."""
    recorded = getattr(_local, "label_bad", None)
    if recorded is None or recorded[0] is not _graph_key():
        return None
    _local.label_bad = None
    return recorded[1]


def guard_loop_labels(on: bool) -> None:
    """Check sparse labels in Keras loss calls outside ``fit`` (while loops are guarded)."""
    _loops_guarded[0] = on


def loop_model(variables: list[Any]) -> tuple[Any, Any]:
    """(the model a hand-written loop trained, the Keras loss it last called), either None.

    The model is the called model whose trainable variables include all of ``variables`` (the
    guarded optimizer's); the smallest such, so a wrapper model does not hide the one trained.
    """
    wanted = {id(v) for v in variables}
    fits = [m for m in list(_models) if wanted <= {id(v) for v in m.trainable_variables}]
    model = min(fits, key=lambda m: len(m.trainable_variables)) if fits else None
    loss = _last_loss[0] if _last_loss else None
    return model, loss


def take_batch() -> tuple[Any, ...] | None:
    """(inputs,) or (inputs, targets) last seen in the current graph, for batch capture. The
    targets are kept only with the inputs of the model call they followed: a loop that calls the
    model again after its Keras loss (a second, unlabeled batch) keeps that last batch alone."""
    key = _graph_key()
    inputs = getattr(_local, "last_inputs", None)
    if inputs is None or inputs[0] is not key:
        return None
    targets = getattr(_local, "last_targets", None)
    _local.last_inputs = _local.last_targets = None
    if targets is None or targets[0] is not key or targets[2] is not inputs:
        return (inputs[1],)
    return (inputs[1], targets[1])


def in_xla() -> bool:
    """Whether the code being traced will be compiled by XLA (which cannot resize variables)."""
    try:
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # pragma: no cover - internal module moved; assume the safe answer
        return True
    if tf.executing_eagerly():
        return False
    return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))


def current_step() -> StepContext | None:
    stack = getattr(_local, "steps", None)
    return stack[-1] if stack else None


@contextlib.contextmanager
def step_context() -> Iterator[StepContext]:
    stack = getattr(_local, "steps", None)
    if stack is None:
        stack = _local.steps = []
    ctx = StepContext()
    stack.append(ctx)
    try:
        yield ctx
    finally:
        stack.pop()


@contextlib.contextmanager
def inside_guard() -> Iterator[bool]:
    """Mark a guarded ``apply`` in progress; yields whether one already was (nested optimizers)."""
    was = getattr(_local, "inside", False)
    _local.inside = True
    try:
        yield was
    finally:
        _local.inside = was


def inside() -> bool:
    """Whether a guarded ``apply`` is being traced or run on this thread right now."""
    return bool(getattr(_local, "inside", False))
