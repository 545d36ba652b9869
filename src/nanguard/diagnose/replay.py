"""Eager replay of an offending step on the pre-step weights: forward, loss, backward.

The guard skipped the update, so the weights in memory are those the bad step saw and the replay
reproduces it. It runs in two passes so that it stays cheap on real models:

1. Layer level, once over the whole model: every layer's ``call`` (Sequential, Functional, nested
   and subclassed models alike; sub-layers included) is wrapped for the replay only, so each call's
   inputs and outputs are kept in execution order. The first layer whose output is non-finite while
   its inputs are finite is the forward culprit (the innermost one, when layers nest). If the
   forward and the loss are finite, one persistent tape gives the gradient reaching each layer's
   output and leaving through its inputs and weights: the first layer (in backward order) that
   receives a finite gradient and passes on a non-finite one is the backward culprit.
2. Op level, on the culprit only: its call (and, for a backward fault, its gradient) runs again
   under a TensorFlow op callback that names the first op whose output is non-finite while its
   inputs are finite (an overflow, log of 0, x/0), or that makes NaN out of NaN-free inputs
   (softmax over all -inf, inf - inf).

The model's non-trainable state (BatchNorm statistics, random seeds) is restored afterwards, so
the replay leaves no trace on training.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from nanguard.diagnose.sample_loss import per_sample_loss

# Ops that only move data or read state: never the origin of a non-finite value.
_PASSIVE_OPS = frozenset(
    """
    ReadVariableOp VarHandleOp AssignVariableOp AssignAddVariableOp Const Identity IdentityN
    Reshape Transpose ConcatV2 Pack Unpack StridedSlice GatherV2 Fill ZerosLike OnesLike
    Shape Squeeze ExpandDims Tile BroadcastTo Slice Split SplitV SelectV2 Select
    """.split()
)


@dataclass
class OpFault:
    """The first op of a layer (or of the loss) that made a non-finite value."""

    op: str
    kind: str  # "overflow": non-finite out of finite inputs; "nan": NaN out of NaN-free inputs
    count: int  # non-finite elements it produced
    input_peak: float  # largest finite |input| it was given

    def describe(self) -> str:
        made = "non-finite values out of finite inputs" if self.kind == "overflow" else "NaN"
        peak = f"its inputs peak at |x| = {self.input_peak:.3g}"
        return f"op {self.op} made {self.count} {made} ({peak})"


@dataclass
class LayerCall:
    layer: Any
    depth: int  # 0 for the model itself
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    outputs: list[Any]
    name: str  # the layer the user knows it by (see reported_names)

    def inputs(self) -> list[Any]:
        return _float_tensors((self.args, self.kwargs))

    def rerun(self) -> Any:
        """The same call again, through ``__call__`` so that the layer's dtype policy (autocast
        to float16 under mixed precision) applies as it did."""
        return self.layer(*self.args, **self.kwargs)


@dataclass
class Culprit:
    """Where the replay first saw a non-finite value."""

    stage: str  # "forward" | "loss" | "backward"
    layer: str | None
    samples: list[int]
    input_peak: float  # largest finite |x| entering the culprit
    op: OpFault | None = None
    masked: OpFault | None = None  # backward: a forward op whose non-finite output was dropped


@dataclass
class StepReplay:
    calls: list[LayerCall] = field(default_factory=list)
    y_pred: Any = None
    loss: float | None = None  # the total loss the model optimizes
    loss_name: str | None = None
    per_sample_loss: np.ndarray | None = None
    culprit: Culprit | None = None

    def activations(self, model: keras.Model) -> list[tuple[str, float, float, float]]:
        """(layer, min, max, peak |x|) of the output of each of the model's own layers, in
        execution order: how magnitudes grew on the way to the incident. Min and max are over
        the finite values; the peak is inf (or nan) where the output holds such values."""
        top = {id(layer) for layer in getattr(model, "layers", [])}
        out = []
        for call in self.calls:
            if id(call.layer) not in top or not call.outputs:
                continue
            values = _numpy(call.outputs[0]).astype(np.float64, copy=False)
            finite = values[np.isfinite(values)]
            low = float(finite.min()) if finite.size else float("nan")
            high = float(finite.max()) if finite.size else float("nan")
            peak = max(abs(low), abs(high)) if finite.size else float("nan")
            if np.isinf(values).any():
                peak = float("inf")
            elif np.isnan(values).any():
                peak = float("nan")
            out.append((call.name, low, high, peak))
        return out

    def first_weighted_inputs(self) -> np.ndarray | None:
        """|values| of the floating-point inputs of the first layer with trainable weights of its
        own to run (calls are recorded as they complete, innermost first): the data as the model
        learns from it, after any scaling inside the model (``Normalization``, ``Rescaling``,
        a custom layer); None when no such layer takes floating-point inputs."""
        for call in self.calls:
            own = getattr(call.layer, "_trainable_variables", None)
            given = call.inputs()
            if call.depth and own and given:
                return np.concatenate(
                    [np.abs(_numpy(v).astype(np.float64, copy=False)).ravel() for v in given]
                )
        return None

    def blown_up(self, peak: float = 1e12, gain: float = 1e6) -> tuple[str, float, float] | None:
        """(layer, input peak, output peak) of the first call to complete (so the innermost)
        that took finite inputs and magnified them ``gain`` times to past ``peak``."""
        for call in self.calls:
            given = call.inputs()
            if not call.outputs or not given or not _all_finite(given):
                continue
            low, high = _peak(given), _peak(call.outputs)
            if high >= peak and high >= gain * max(low, 1.0):
                return call.name, low, high
        return None


# -- helpers -------------------------------------------------------------------------------------


def _float_tensors(value: Any) -> list[Any]:
    return [
        t
        for t in tf.nest.flatten(value)
        if isinstance(t, tf.Tensor | tf.Variable | np.ndarray) and _is_float(t.dtype)
    ]


def _is_float(dtype: Any) -> bool:
    try:
        return tf.as_dtype(dtype).is_floating
    except TypeError:
        return False


def _numpy(value: Any) -> np.ndarray:
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


def _all_finite(values: list[Any]) -> bool:
    return all(np.isfinite(_numpy(v)).all() for v in values)


def _peak(values: list[Any]) -> float:
    peak = 0.0
    for v in values:
        arr = np.abs(_numpy(v).astype(np.float64, copy=False))
        finite = arr[np.isfinite(arr)]
        if finite.size:
            peak = max(peak, float(finite.max()))
    return peak


def nonfinite_rows(value: Any, rows: int) -> list[int]:
    """Batch positions holding a non-finite value in ``value`` (batch-major tensors only)."""
    found: set[int] = set()
    for t in _float_tensors(value):
        arr = _numpy(t)
        if arr.ndim and arr.shape[0] == rows:
            found.update(np.flatnonzero(~np.isfinite(arr.reshape(rows, -1)).all(axis=1)).tolist())
    return sorted(found)


@contextlib.contextmanager
def _restored_state(model: keras.Model) -> Iterator[None]:
    """Put back every non-trainable variable (BatchNorm statistics, seed generators) after."""
    saved = [(v, v.numpy()) for v in model.non_trainable_variables]
    try:
        yield
    finally:
        for variable, value in saved:
            variable.assign(value)


@contextlib.contextmanager
def _recorded_calls(model: keras.Model) -> Iterator[list[LayerCall]]:
    """Wrap every layer's ``call`` (the model's own too) for the replay.

    Yields the list of calls, in the order they complete (inner layers before outer ones)."""
    calls: list[LayerCall] = []
    depth = [0]
    patched = []
    names = reported_names(model)
    for layer in [model, *model._flatten_layers(include_self=False, recursive=True)]:
        if isinstance(layer, keras.layers.InputLayer) or "call" in layer.__dict__:
            continue
        original = layer.call

        def call(*args: Any, _fn: Any = original, _layer: Any = layer, **kwargs: Any) -> Any:
            level = depth[0]
            depth[0] += 1
            try:
                result = _fn(*args, **kwargs)
            finally:
                depth[0] = level
            outputs = [t for t in tf.nest.flatten(result) if isinstance(t, tf.Tensor)]
            name = names.get(id(_layer), _layer.name)
            calls.append(LayerCall(_layer, level, args, kwargs, outputs, name))
            return result

        object.__setattr__(layer, "call", call)
        patched.append(layer)
    try:
        yield calls
    finally:
        for layer in patched:
            object.__delattr__(layer, "call")


def reported_names(model: keras.Model) -> dict[int, str]:
    """The name to report for each layer: its own, except for the inner parts of Keras' built-in
    layers (the cell of a ``SimpleRNN``, the layers of ``MultiHeadAttention``), which go by the
    built-in layer the user created."""
    parent: dict[int, Any] = {}
    for layer in [model, *model._flatten_layers(include_self=False, recursive=True)]:
        for child in layer._flatten_layers(include_self=False, recursive=False):
            parent.setdefault(id(child), layer)
    names = {}
    for layer in model._flatten_layers(include_self=False, recursive=True):
        shown = layer
        while (
            id(shown) in parent
            and not isinstance(parent[id(shown)], keras.Model)
            and type(parent[id(shown)]).__module__.startswith("keras.")
        ):
            shown = parent[id(shown)]
        names[id(layer)] = shown.name
    return names


class _OpWatch:
    """Records, while active, the first ops that turn finite values non-finite (eager only)."""

    def __init__(self) -> None:
        self.faults: list[OpFault] = []

    def __call__(
        self,
        op_type: str,
        inputs: Any,
        attrs: Any,
        outputs: Any,
        op_name: Any = None,
        graph: Any = None,
    ) -> None:
        if isinstance(op_type, bytes):
            op_type = op_type.decode()
        if graph is not None or op_type in _PASSIVE_OPS or op_type.startswith("__inference"):
            return None
        outs = [_numpy(o) for o in outputs or () if _is_float(o.dtype)]
        bad = [~np.isfinite(o) for o in outs]
        if not any(b.any() for b in bad):
            return None
        ins = [_numpy(i) for i in inputs or () if _is_float(i.dtype)]
        if all(np.isfinite(i).all() for i in ins):
            kind = "overflow"
        elif any(np.isnan(o).any() for o in outs) and not any(np.isnan(i).any() for i in ins):
            kind = "nan"
        else:
            return None  # only passes on what it was given
        count = int(sum(int(b.sum()) for b in bad))
        self.faults.append(OpFault(op_type, kind, count, _peak(ins)))
        return None

    @contextlib.contextmanager
    def active(self) -> Iterator[_OpWatch]:
        try:
            from tensorflow.python.framework import op_callbacks
        except ImportError:  # pragma: no cover - internal module moved: no op-level answer
            yield self
            return
        op_callbacks.add_op_callback(self)
        try:
            yield self
        finally:
            op_callbacks.remove_op_callback(self)


def _first_fault(run: Callable[[], Any]) -> tuple[OpFault | None, list[OpFault], Any]:
    """Run ``run`` under the op watch: (first fault, all faults, its result)."""
    watch = _OpWatch()
    with watch.active():
        result = run()
    faults = watch.faults
    first = next((f for f in faults if f.kind == "overflow"), None) or (
        faults[0] if faults else None
    )
    return first, faults, result


# -- the replay ----------------------------------------------------------------------------------


def _loss_fn(model: keras.Model, loss: Any) -> Callable[[Any, Any, Any, Any], Any] | None:
    """The total loss of a step: the compiled loss of ``fit``, or the hand-written loop's loss."""
    if loss is not None:
        return lambda x, y, y_pred, sw: loss(y, y_pred, sample_weight=sw)
    if getattr(model, "compiled", False) and getattr(model, "loss", None) is not None:
        return lambda x, y, y_pred, sw: model.compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sw, training=True
        )
    return None


def replay_step(
    model: keras.Model,
    x: Any,
    y: Any = None,
    sample_weight: Any = None,
    *,
    loss: Any = None,
) -> StepReplay:
    """Replay one batch through ``model`` eagerly and find where it first goes non-finite.

    ``loss``: a Keras loss a hand-written loop used (``fit`` models use their compiled loss).
    """
    out = StepReplay()
    rows = _rows(x)
    loss_fn = _loss_fn(model, loss)
    inputs, y, sample_weight = tf.nest.map_structure(
        lambda v: tf.convert_to_tensor(v) if v is not None else None, (x, y, sample_weight)
    )
    with _restored_state(model), _recorded_calls(model) as calls:
        with tf.GradientTape(persistent=True) as tape:
            watched = _float_tensors(inputs)
            tape.watch(watched)
            out.y_pred = model(inputs, training=True)
            total = None
            if loss_fn is not None and y is not None and _all_finite(_float_tensors(out.y_pred)):
                total = loss_fn(inputs, y, out.y_pred, sample_weight)
        out.calls = list(calls)
        forward = _forward_culprit(out.calls, rows)
        if forward is not None:
            out.culprit = forward
            return out
        if total is None:
            if loss_fn is None and _own_train_step(model):
                out.culprit = _train_step_culprit(model, (inputs, y, sample_weight), rows, calls)
            return out
        out.loss = float(np.asarray(_numpy(total)).sum())
        out.loss_name, out.per_sample_loss = per_sample_loss(model, loss, y, out.y_pred)
        if not np.isfinite(out.loss):
            out.culprit = _loss_culprit(loss_fn, inputs, y, sample_weight, out)
            return out
        out.culprit = _backward_culprit(tape, total, out, watched, model, rows)
    return out


def _own_train_step(model: keras.Model) -> bool:
    """The model computes its loss in a ``train_step`` of its own (no compiled loss to replay)."""
    return type(model).train_step is not keras.Model.train_step


def _train_step_culprit(
    model: keras.Model, batch: tuple[Any, Any, Any], rows: int, calls: list[LayerCall]
) -> Culprit | None:
    """Run the model's own ``train_step`` eagerly on the batch, its update switched off (and the
    metrics it updates put back), under the op watch: the first op that goes non-finite, in a
    layer (a forward culprit), else in the loss the step computes by hand, else in its gradient.
    None when nothing goes non-finite, or the step cannot run eagerly."""
    optimizer = model.optimizer
    saved = {
        k: optimizer.__dict__[k] for k in ("apply", "apply_gradients") if k in optimizer.__dict__
    }
    metrics = [(v, v.numpy()) for v in model.metrics_variables]
    optimizer.apply = optimizer.apply_gradients = lambda *args, **kwargs: None
    first = len(calls)
    try:
        fault, _, _ = _first_fault(
            lambda: model.train_step(keras.utils.pack_x_y_sample_weight(*batch))
        )
    except Exception:  # a step written for graph mode only: the rules go on without it
        return None
    finally:
        for key in ("apply", "apply_gradients"):
            optimizer.__dict__.pop(key, None)
        optimizer.__dict__.update(saved)
        for variable, value in metrics:
            variable.assign(value)
    forward = _forward_culprit(calls[first:], rows)
    if forward is not None or fault is None:
        return forward
    stage = "loss"
    if fault.op.endswith("Grad") and len(fault.op) > len("Grad"):  # forward and loss finite
        stage, fault.op = "backward", fault.op[: -len("Grad")]
    peak = _peak(_float_tensors([c.outputs for c in calls[first:]]))
    return Culprit(stage, None, [], peak, op=fault)


def _rows(x: Any) -> int:
    first = next((v for v in tf.nest.flatten(x) if v is not None and np.ndim(v)), None)
    return int(np.shape(first)[0]) if first is not None else 0


def _forward_culprit(calls: list[LayerCall], rows: int) -> Culprit | None:
    """The first layer call to complete (so the innermost) with finite inputs, non-finite output."""
    for call in calls:
        if _all_finite(call.outputs):
            continue
        given = call.inputs()
        if not _all_finite(given):
            continue
        fault, _, _ = _first_fault(call.rerun)
        return Culprit(
            "forward", call.name, nonfinite_rows(call.outputs, rows), _peak(given), op=fault
        )
    return None


def _loss_culprit(
    loss_fn: Callable[..., Any], x: Any, y: Any, sample_weight: Any, replay: StepReplay
) -> Culprit:
    fault, _, _ = _first_fault(lambda: loss_fn(x, y, replay.y_pred, sample_weight))
    values = replay.per_sample_loss
    samples = np.flatnonzero(~np.isfinite(values)).tolist() if values is not None else []
    return Culprit("loss", None, samples, _peak(_float_tensors(replay.y_pred)), op=fault)


def _backward_culprit(
    tape: tf.GradientTape,
    total: Any,
    replay: StepReplay,
    watched: list[Any],
    model: keras.Model,
    rows: int,
) -> Culprit | None:
    """One backward pass gives every layer's incoming and outgoing gradients.

    A layer is a candidate when the gradient reaching its outputs is finite but one leaving
    through its inputs or weights is not. A tensor's gradient sums what all its consumers send
    back, so a layer that only shares an input with the culprit is a candidate too; each one's
    own backward pass is therefore re-run locally (its outputs' gradient in, through that layer
    alone), and the culprit is the first in backward order (the reverse of completion order)
    whose local pass is non-finite, refined to the innermost of its sub-layers that also is.
    """
    calls = replay.calls
    sources = {
        "weights": list(model.trainable_variables),
        "inputs": watched,
        "y_pred": _float_tensors(replay.y_pred),
        "calls": [
            (c.outputs, c.inputs() + list(getattr(c.layer, "trainable_variables", [])))
            for c in calls
        ],
    }
    grads = tape.gradient(total, sources)
    if _all_finite([g for g in grads["weights"] if g is not None]):
        return None
    samples = nonfinite_rows([g for g in grads["inputs"] if g is not None], rows)
    if not _all_finite([g for g in grads["y_pred"] if g is not None]):
        # The loss itself passes a non-finite gradient back (e.g. sqrt of a zero MSE).
        return Culprit("backward", None, samples, _peak(sources["y_pred"]))
    at_fault: list[tuple[LayerCall, LocalBackward]] = []
    for call, (upstream, passed) in reversed(list(zip(calls, grads["calls"], strict=True))):
        if not upstream or any(g is None for g in upstream) or not _all_finite(upstream):
            continue
        if _all_finite([g for g in passed if g is not None]):
            continue
        local = _local_backward(call, upstream)
        if local.nonfinite:
            at_fault.append((call, local))
    if not at_fault:
        return Culprit("backward", None, samples, 0.0)
    chosen, local = at_fault[0]
    for call, other in at_fault[1:]:
        if call.layer in chosen.layer._flatten_layers(include_self=False, recursive=True):
            chosen, local = call, other
    return Culprit(
        "backward", chosen.name, samples, _peak(chosen.inputs()), op=local.op, masked=local.masked
    )


@dataclass
class LocalBackward:
    """One layer's backward pass on its own, with the gradient its outputs received."""

    nonfinite: bool
    op: OpFault | None  # the first backward op that made a non-finite value
    masked: OpFault | None  # a forward op whose non-finite output never reached the output


def _local_backward(call: LayerCall, upstream: list[Any]) -> LocalBackward:
    """Re-run one layer's forward and backward under the op watch.

    ``masked`` is a forward op whose non-finite output never reached the layer's output (the
    untaken branch of a ``where``): its gradient is still computed there, and 0 x inf is NaN.
    """
    given = call.inputs()
    variables = list(getattr(call.layer, "trainable_variables", []))

    def forward() -> tuple[tf.GradientTape, Any]:
        with tf.GradientTape() as tape:
            tape.watch(given)
            result = call.rerun()
        return tape, result

    _, forward_faults, (tape, result) = _first_fault(forward)
    outputs = [t for t in tf.nest.flatten(result) if isinstance(t, tf.Tensor)]
    masked = None
    if forward_faults and _all_finite(outputs):
        masked = next((f for f in forward_faults if f.kind == "overflow"), forward_faults[0])
    fault, _, passed = _first_fault(
        lambda: tape.gradient(outputs, given + variables, output_gradients=upstream)
    )
    if fault is not None and fault.op.endswith("Grad") and len(fault.op) > len("Grad"):
        fault.op = fault.op[: -len("Grad")]
    nonfinite = not _all_finite([g for g in passed if g is not None])
    return LocalBackward(nonfinite, fault, masked)
