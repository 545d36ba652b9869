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
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import keras
import tensorflow as tf

_local = threading.local()


@dataclass
class StepContext:
    """What one traced ``train_step`` knows beyond the optimizer's view."""

    label_bad: Any = None  # scalar bool tensor: a sparse label outside [0, num_classes)
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
        _local.last_targets = (_graph_key(), y_true)
        return original(self, y_true, *args, **kwargs)

    return __call__


def take_batch() -> tuple[Any, ...] | None:
    """(inputs,) or (inputs, targets) last seen in the current graph, for batch capture."""
    key = _graph_key()
    inputs = getattr(_local, "last_inputs", None)
    if inputs is None or inputs[0] is not key:
        return None
    targets = getattr(_local, "last_targets", None)
    _local.last_inputs = _local.last_targets = None
    return (inputs[1],) if targets is None or targets[0] is not key else (inputs[1], targets[1])


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
