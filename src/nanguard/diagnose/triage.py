"""Diagnosis of an incident: rules over measured evidence, most specific first.

Order matters. A fault in the data explains everything downstream of it, so the batch is read
first (non-finite values, labels, targets outside the loss's domain); then the mixed-precision
evidence; then the eager replay of the step (:mod:`nanguard.diagnose.replay`), which names the
layer, op and samples where a value first went non-finite. An op that cannot take the values it
was given (exp, log, division, sqrt, softmax) is the cause itself; a plain multiply or add that
overflowed only says that magnitudes got too big, and the rules in
:mod:`nanguard.diagnose.magnitude` then say why (outlier samples, unscaled data, the initial
weights, gradients growing over steps, a learning rate that diverged). Every claim carries its
number.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nanguard.contract import Alternative, Incident
from nanguard.diagnose import losses, magnitude
from nanguard.diagnose.nonfinite import (
    MAX_LISTED,
    finite_weights_fix,
    learning_rate_value,
    listed,
    nonfinite_rows,
    nonfinite_weights,
    overflow_fix,
    weights_before,
)
from nanguard.diagnose.rows import leaves
from nanguard.probe import state as st
from nanguard.probe.capture import CapturedBatch

# Ops whose domain or range is limited: a non-finite value out of finite inputs is their doing.
DOMAIN_OPS = frozenset(
    """
    Exp Expm1 Log Log1p Sqrt Rsqrt RealDiv Div FloorDiv Reciprocal Inv Pow Softmax LogSoftmax
    Xlogy Xdivy Xlog1py Lgamma Digamma Atanh Acosh Asin Acos Tan Sinh Cosh Mean Softplus
    """.split()
)


@dataclass
class Facts:
    step: int
    flags: int
    batch: CapturedBatch | None
    history: dict[str, np.ndarray]  # rows before the step (see History.before)
    model: Any = None
    error: BaseException | None = None
    loss: Any = None  # the Keras loss a hand-written loop used, when known
    variable_names: list[str] = field(default_factory=list)  # columns of history["grad_norms"]
    source: Any = None  # the data the user trains on, when known (see diagnose.rows)
    finite_at_start: bool | None = None  # the model's weights when the run began; None: unknown
    replay_error: str | None = None
    _replay: Any = field(default=None, repr=False)

    def replay(self) -> Any:
        """The eager replay of the step (:class:`~nanguard.diagnose.replay.StepReplay`), once."""
        if self._replay is None:
            from nanguard.diagnose.replay import replay_step

            found = None
            if self.batch is not None and self.model is not None:
                try:
                    found = replay_step(
                        self.model,
                        self.batch.x,
                        self.batch.y,
                        self.batch.sample_weight,
                        loss=self.loss,
                    )
                except Exception as exc:  # a model the replay cannot run: rules without it
                    self.replay_error = f"{type(exc).__name__}: {exc}"
            self._replay = (found,)
        return self._replay[0]

    def replayed(self) -> Any:
        """The replay if a rule already ran it (None otherwise): reporting never forces one."""
        return self._replay[0] if self._replay is not None else None

    def culprit(self) -> Any:
        replay = self.replay()
        return replay.culprit if replay is not None else None


@dataclass
class Diagnosis:
    root_cause: str = "unknown"
    confidence: float = 0.3
    alternatives: list[Alternative] = field(default_factory=list)
    layer: str | None = None
    op: str | None = None
    samples: list[int] = field(default_factory=list)
    features: list[int] | None = None
    evidence: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)
    dataset_rows: list[int] | None = None  # rows named from the data itself, not the batch

    def incident(
        self,
        *,
        step: int,
        epoch: int | None,
        batch: int | None,
        symptom: str,
        action: str,
        kept: CapturedBatch | None,
        rows_of: Callable[[list[int]], list[int] | None] = lambda samples: None,
        extra_evidence: list[str] | None = None,
        began: float | None = None,
    ) -> Incident:
        """The report's incident for this diagnosis. ``kept``: the batch it was made from (under
        tf.distribute, one replica's share: samples become global batch positions);
        ``rows_of``: dataset rows of batch samples, when the diagnosis named none itself;
        ``began``: when diagnosing started (``perf_counter``), for ``diagnosis_seconds``."""
        samples, evidence = list(self.samples), list(self.evidence)
        if kept is not None and kept.replicas > 1:
            samples = [kept.replica * kept.size + s for s in samples]
            evidence.append(f"on replica {kept.replica} of {kept.replicas}")
        return Incident(
            step=step,
            epoch=epoch,
            batch=batch,
            symptom=symptom,
            root_cause=self.root_cause,
            confidence=round(self.confidence, 2),
            alternatives=self.alternatives,
            layer=self.layer,
            op=self.op,
            samples=samples,
            dataset_indices=self.dataset_rows or rows_of(self.samples),
            features=self.features,
            evidence=evidence + list(extra_evidence or []),
            fixes=list(self.fixes),
            action=action,
            diagnosis_seconds=round(time.perf_counter() - began, 3) if began is not None else 0.0,
        )


def symptom(flags: int, error: BaseException | None) -> str:
    if error is not None:
        return "error"
    if flags & (st.LOSS_NONFINITE | st.LABEL_OUT_OF_RANGE):
        return "nonfinite_loss"
    if flags & (st.GRAD_NONFINITE | st.SCALER_STUCK):
        return "nonfinite_gradient"
    return "nonfinite_weights"


def diagnose(facts: Facts) -> Diagnosis:
    for rule in (
        _update_overflow,
        _error_message,
        _labels,
        _nonfinite_data,
        _invalid_target,
        _float16,
        _nonfinite_weights,
        _localized,
        _saturated_output,
        _from_magnitudes,
        _inline_loss,
    ):
        found = rule(facts)
        if found is not None:
            return found
    return _unknown(facts)


# -- data ------------------------------------------------------------------------------------


def flat_samples(a: Any) -> np.ndarray | None:
    if a is None:
        return None
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiub" or arr.ndim == 0:
        return None
    return arr.reshape(arr.shape[0], -1)


def only_array(value: Any) -> Any:
    flat = leaves(value)
    return flat[0] if len(flat) == 1 else None


def _nonfinite_data(facts: Facts) -> Diagnosis | None:
    batch = facts.batch
    if batch is None:
        return None
    for which, value, cause in (
        ("inputs", batch.x, "input_nonfinite"),
        ("targets", batch.y, "target_nonfinite"),
        ("sample weights", batch.sample_weight, "target_nonfinite"),
    ):
        samples, features, count, name = nonfinite_rows(value)
        if not samples:
            continue
        evidence = [
            f"{count} non-finite value(s) in the {which} ({name}) of {len(samples)} of "
            f"{batch.size} samples in the batch: positions {listed(samples)}",
            f"flat feature positions within a sample: {listed(features)}",
            weights_before(
                nonfinite_weights(facts.model.weights) if facts.model is not None else None
            ),
        ]
        if which == "inputs" and len(samples) == batch.size and len(features) <= 3:
            evidence.append(
                f"every sample has it in the same {len(features)} feature(s): a column made "
                "non-finite by preprocessing (0/0 in standardization of a constant column?)"
            )
        kind, array = {"inputs": ("feature", "x"), "targets": ("target", "y")}.get(
            which, ("sample weight", "sample_weight")
        )
        fixes = [
            f"Drop or repair the records with NaN/Inf {kind}s before training, e.g. "
            f"`keep = np.isfinite({array}.reshape(len({array}), -1)).all(axis=1); "
            "x, y = x[keep], y[keep]`",
            "Check the preprocessing that produced them: a division by a zero std or count "
            "(use `(x - mean) / (std + 1e-8)`), log of 0, or a failed parse.",
        ]
        return Diagnosis(
            cause,
            0.97,
            samples=samples,
            features=features if which == "inputs" else None,
            evidence=evidence,
            fixes=fixes,
        )
    return None


_LABEL_ERROR = re.compile(
    r"label value of (-?\d+) which is outside the valid range of \[0, (\d+)\)"
)


def _error_message(facts: Facts) -> Diagnosis | None:
    if facts.error is None:
        return None
    text = str(facts.error)
    match = _LABEL_ERROR.search(text)
    if match:
        label, units = int(match.group(1)), int(match.group(2))
        found = _labels(facts, force=True)
        if found is not None and found.samples:
            return found
        return Diagnosis(
            "label_out_of_range",
            0.95,
            evidence=[
                f"the loss op raised: label {label} is outside [0, {units}) "
                f"(the output layer has {units} units)"
            ],
            fixes=_label_fixes(units, label),
        )
    if facts.batch is not None:
        data = _nonfinite_data(facts)
        if data is not None:
            return data
    message, op = error_summary(facts.error)
    return Diagnosis(
        "unknown",
        0.2,
        op=op,
        evidence=[f"training raised {type(facts.error).__name__}: {message[:300]}"],
        fixes=["Read the traceback above; the error was raised inside the training step."],
    )


_NODE = re.compile(r"\{\{node ([^}]+)\}\}")


def error_summary(error: BaseException) -> tuple[str, str | None]:
    """The op's own message inside a TensorFlow error (past its Python traceback) and op name."""
    text = getattr(error, "message", None) or str(error)
    lines = [line for line in text.splitlines() if line.strip()]
    message = next(
        (
            line.strip()
            for line in reversed(lines)
            if not line[:1].isspace() and not line.startswith(("File ", "Graph execution error"))
        ),
        lines[0].strip() if lines else type(error).__name__,
    )
    node = _NODE.search(text)
    return message, node.group(1).rsplit("/", 1)[-1] if node else None


def _label_fixes(units: int, label: int) -> list[str]:
    """Fixes for a label outside [0, units): ``label`` is the worst one seen."""
    if label < 0:
        first = [
            f"Labels below 0 (like -1 for 'unlabeled') are no class: drop those rows "
            "(`keep = y >= 0`) or tell the loss to skip them: "
            f"`keras.losses.SparseCategoricalCrossentropy(ignore_class={label})`.",
        ]
    else:
        first = [
            f"Labels must lie in [0, {units}) for a {units}-unit output. If there are really "
            f"{label + 1} classes, give the output layer {label + 1} units.",
            "If labels start at 1, shift them: `y = y - 1`; drop or fix rows with invalid labels.",
        ]
    return [*first, "On GPU or under XLA this fault gives a silent NaN instead of an error."]


def _labels(facts: Facts, force: bool = False) -> Diagnosis | None:
    if not (force or facts.flags & st.LABEL_OUT_OF_RANGE) or facts.batch is None:
        return None
    y = flat_samples(only_array(facts.batch.y))
    units = output_units(facts.model)
    if y is None or units is None:
        return Diagnosis(
            "label_out_of_range", 0.8, evidence=["a label was outside the output's range"]
        )
    labels = y[:, 0] if y.shape[1] == 1 else y.ravel()
    finite = np.isfinite(labels) if labels.dtype.kind == "f" else np.ones(labels.shape, bool)
    outside = ~finite | (labels < 0) | (labels >= units)
    samples = np.flatnonzero(outside).tolist()
    if not samples:
        return None
    shown = ", ".join(f"{labels[i]:g} at batch position {i}" for i in samples[:MAX_LISTED])
    seen = labels[outside & finite]
    worst = int(seen.min() if seen.size and seen.min() < 0 else seen.max()) if seen.size else units
    return Diagnosis(
        "label_out_of_range",
        0.97,
        samples=samples,
        evidence=[
            f"{len(samples)} label(s) outside [0, {units}): {shown}",
            f"the output layer has {units} units; labels in the batch span "
            f"[{np.nanmin(labels[finite]):g}, {np.nanmax(labels[finite]):g}]",
        ],
        fixes=_label_fixes(units, worst),
    )


def output_units(model: Any) -> int | None:
    try:
        shape = model.outputs[0].shape
    except (AttributeError, IndexError, TypeError, ValueError):
        try:
            shape = model.layers[-1].output.shape
        except (AttributeError, IndexError, TypeError, ValueError):
            return None
    return int(shape[-1]) if shape and shape[-1] is not None else None


def _invalid_target(facts: Facts) -> Diagnosis | None:
    """Targets outside the domain of the loss in use (BCE targets outside [0, 1], negative counts
    for Poisson, negative class weights for cross-entropy)."""
    if facts.batch is None:
        return None
    loss = losses.describe(facts.model, facts.loss)
    y = flat_samples(only_array(facts.batch.y))
    if loss is None or loss.target_range is None or y is None or y.dtype.kind not in "fiu":
        return None
    low, high = loss.target_range
    outside = (y < low) | (y > high)
    samples = np.flatnonzero(outside.any(axis=1)).tolist()
    if not samples:
        return None
    values = y[outside]
    span = f"[{low:g}, {high:g}]" if np.isfinite(high) else f">= {low:g}"
    evidence = [
        f"{int(outside.sum())} target value(s) in {len(samples)} of {len(y)} samples lie outside "
        f"{span}, the domain of '{loss.name}' (seen: {float(values.min()):g} to "
        f"{float(values.max()):g}); positions {listed(samples)}",
    ]
    below = losses.went_negative(facts.history) if loss.nonnegative else None
    if below is not None:
        evidence.append(
            f"the loss went below zero ({below[1]:.4g} at step {below[0]}), which '{loss.name}' "
            "cannot do with valid targets: training was pushing predictions out of range"
        )
    return Diagnosis(
        "invalid_target",
        0.85,
        [Alternative("unstable_loss", 0.1)],
        samples=samples,
        evidence=evidence,
        fixes=[loss.target_fix],
    )


# -- mixed precision -----------------------------------------------------------------------------


def _float16(facts: Facts) -> Diagnosis | None:
    policy = getattr(getattr(facts.model, "dtype_policy", None), "compute_dtype", None)
    stuck = bool(facts.flags & st.SCALER_STUCK)
    loss_bad = bool(facts.flags & st.LOSS_NONFINITE)
    evidence = [f"the compute dtype is {policy}; float16 overflows above 65504"]
    if stuck and not loss_bad:
        # The scale fell by 2**patience and the loss stayed finite: an overflow in the backward
        # pass would have gone with the scale. What is left does not depend on it: 0/0, sqrt(0).
        culprit = facts.culprit()
        return Diagnosis(
            "unstable_gradient",
            0.7,
            [Alternative("float16_overflow", 0.25)],
            layer=culprit.layer if culprit is not None else None,
            op=_op_name(culprit),
            evidence=[
                *evidence,
                "the LossScaleOptimizer skipped every recent step while the loss stayed finite: "
                "the gradients are non-finite whatever the loss scale",
            ],
            fixes=[
                "Find the op whose gradient is undefined where it is evaluated (sqrt or norm at "
                "0, division by 0, log at 0) and add an epsilon: `ops.sqrt(x + 1e-12)`.",
                "Check it in float32 (`keras.mixed_precision.set_global_policy('float32')`): "
                "if it still fails, the fault is not float16.",
            ],
        )
    if policy != "float16" or facts.batch is None:
        return None
    # Non-finite in float16 is float16's doing if the value that overflowed would fit float32:
    # the replay (in the same policy) shows a float16 layer overflowing from finite inputs.
    culprit = facts.culprit()
    layer = _layer(facts.model, culprit.layer) if culprit and culprit.layer else None
    if culprit is None or culprit.stage != "forward" or layer is None:
        return None
    if getattr(layer, "compute_dtype", None) != "float16":
        return None
    fault = culprit.op
    if fault is not None and fault.kind != "overflow":
        return None
    peaks = [
        f"{name} {peak:.3g}"
        for name, _, _, peak in facts.replay().activations(facts.model)
        if peak > 65504 / 16
    ]
    if peaks:
        evidence.append(
            "activation peaks within 16x of the float16 limit (65504): " + ", ".join(peaks[:6])
        )
    return Diagnosis(
        "float16_overflow",
        0.85,
        [Alternative("unstable_op", 0.1)],
        layer=culprit.layer,
        op=_op_name(culprit),
        samples=culprit.samples,
        evidence=[
            *evidence,
            f"replaying the batch: layer '{culprit.layer}' (computing in float16) outputs "
            f"non-finite values while its inputs are finite (they peak at |x| = "
            f"{culprit.input_peak:.3g})" + (f"; {fault.describe()}" if fault else ""),
        ],
        fixes=[
            f"Keep '{culprit.layer}' in float32: pass `dtype='float32'` to it (and always to "
            "the final activation / softmax).",
            "Or train in float32: `keras.mixed_precision.set_global_policy('float32')`; or "
            "normalize the activations that grow (LayerNormalization).",
        ],
    )


def _op_name(culprit: Any) -> str | None:
    if culprit is None:
        return None
    if culprit.masked is not None:
        return culprit.masked.op
    return culprit.op.op if culprit.op is not None else None


# -- the update -----------------------------------------------------------------------------------


def _update_overflow(facts: Facts) -> Diagnosis | None:
    if not facts.flags & st.WEIGHT_NONFINITE or facts.flags & (
        st.LOSS_NONFINITE | st.GRAD_NONFINITE
    ):
        return None
    lr = learning_rate_value(facts.model)
    return Diagnosis(
        "learning_rate_too_high",
        0.8,
        [Alternative("exploding_gradients", 0.15)],
        evidence=[
            "the loss and every gradient of this step were finite, but the weights after its "
            "update are not: learning rate x update overflowed float32"
            + (f" (learning rate {lr:g})" if lr else ""),
            "the optimizer update itself cannot be undone: the weights are non-finite",
        ],
        fixes=[overflow_fix(lr)],
    )


# -- the replay ------------------------------------------------------------------------------------


def _layer(model: Any, name: str) -> Any:
    try:
        return model.get_layer(name)
    except (AttributeError, ValueError):
        for layer in getattr(model, "_flatten_layers", lambda **_: [])(
            include_self=True, recursive=True
        ):
            if layer.name == name:
                return layer
        return None


def _nonfinite_weights(facts: Facts) -> Diagnosis | None:
    """The first layer to output non-finite values holds non-finite weights of its own, and the
    model's weights were not all finite when the run began (or that is not known, as for a
    bundle): they were set that way, most often statistics adapted on data with NaN
    (``Normalization.adapt``), or weights loaded from a checkpoint saved after a NaN, or given
    through ``set_weights``. (Weights that an overflowing update made non-finite are that
    update's incident, found by the recorder.)"""
    if facts.finite_at_start:
        return None
    culprit = facts.culprit()
    if culprit is None or culprit.stage != "forward" or culprit.layer is None:
        return None
    layer = _layer(facts.model, culprit.layer)
    bad = nonfinite_weights(getattr(layer, "weights", []))
    if not bad:
        return None
    adapted = hasattr(layer, "adapt")
    return Diagnosis(
        "bad_initialization",
        0.9,
        [Alternative("input_nonfinite", 0.1)] if adapted else [],
        layer=culprit.layer,
        samples=culprit.samples,
        evidence=[
            f"replaying the batch: layer '{culprit.layer}' outputs non-finite values while its "
            f"inputs are finite (they peak at |x| = {culprit.input_peak:.3g})",
            f"its own weights were non-finite before this step: {', '.join(bad[:MAX_LISTED])}",
        ]
        + (
            [
                "it is an adapted preprocessing layer: data with NaN/Inf given to its `adapt()` "
                "makes its statistics NaN"
            ]
            if adapted
            else []
        ),
        fixes=[finite_weights_fix(layer)],
    )


def _localized(facts: Facts) -> Diagnosis | None:
    """Name the layer and op the replay found; decide whether that op is the cause."""
    culprit = facts.culprit()
    if culprit is None:
        return None
    op = culprit.masked or culprit.op
    if culprit.samples:
        outlier = magnitude.input_outlier(facts, culprit)
        if outlier is not None:
            return outlier
    if culprit.stage == "loss":
        return _loss_fault(facts, culprit)
    if op is None or op.op not in DOMAIN_OPS:
        return None  # a multiply or add overflowed: magnitudes grew too big; see _from_magnitudes
    if culprit.stage == "backward":
        return _gradient_fault(facts, culprit)
    where = f"layer '{culprit.layer}'"
    return Diagnosis(
        "unstable_op",
        0.8,
        [Alternative("input_outlier", 0.1)],
        layer=culprit.layer,
        op=op.op,
        samples=culprit.samples,
        evidence=[
            f"replaying the batch on the pre-step weights: {where} outputs non-finite values "
            f"for {len(culprit.samples)} sample(s) while its inputs are finite (they peak at "
            f"|x| = {culprit.input_peak:.3g})",
            f"inside it, {op.describe()}",
        ],
        fixes=_op_fixes(op.op, culprit.layer),
    )


_OP_FIXES = {
    "Exp": "Bound the exponent: `ops.exp(ops.minimum(x, 80.0))` (float32 overflows past "
    "exp(88.7)), or use a stable built-in (`ops.softplus`, `keras.activations.mish`, "
    "`ops.logsumexp`) instead of writing exp by hand.",
    "Log": "Keep the argument positive: `ops.log(ops.maximum(x, 1e-7))` or "
    "`ops.log(ops.clip(p, 1e-7, 1.0))`; `ops.log1p(x)` for log(1 + x).",
    "Sqrt": "Add an epsilon: `ops.sqrt(x + 1e-12)` (and `ops.maximum(x, 0)` if x can be negative).",
    "Rsqrt": "Add an epsilon: `ops.rsqrt(x + 1e-6)`.",
    "RealDiv": "Guard the denominator: `x / (d + 1e-8)` or `ops.divide_no_nan(x, d)`.",
    "Reciprocal": "Guard the denominator: `1 / (d + 1e-8)`.",
    "Pow": "Keep the base positive for fractional powers: `ops.power(ops.maximum(x, 1e-7), p)`.",
    "Softmax": "A row whose entries are all masked (-inf) has no softmax: mask with a large "
    "negative number (`-1e9`), not -inf, or give every row at least one valid entry.",
}


def _op_fixes(op: str | None, layer: str | None) -> list[str]:
    """Fixes for an op (None: one not named) that went non-finite in ``layer``."""
    where = f" in '{layer}'" if layer else ""
    what = f"the {op} op{where}" if op else (f"'{layer}'" if layer else "the computation")
    first = _OP_FIXES.get(
        op or "", f"Make {what} numerically safe: clip its input into its domain."
    )
    return [
        first + (f" (in '{layer}')" if layer and op in _OP_FIXES else ""),
        "Check the inputs that reach it: normalize them (LayerNormalization / "
        "BatchNormalization) if they are far from unit scale.",
    ]


def _gradient_fault(facts: Facts, culprit: Any) -> Diagnosis:
    op = culprit.masked or culprit.op
    evidence = [
        "replaying the step: the forward pass and the loss are finite, but the gradient "
        + (f"through layer '{culprit.layer}'" if culprit.layer else "of the loss")
        + " is not: it receives a finite gradient and passes on a non-finite one"
    ]
    if culprit.masked is not None:
        evidence.append(
            f"in its forward pass, op {culprit.masked.op} made {culprit.masked.count} "
            "non-finite value(s) that a `where`/select then discarded: the gradient is still "
            "computed through the untaken branch, and 0 x inf = NaN"
        )
        fixes = [
            "Make the untaken branch safe too (the double-where trick): "
            "`safe = ops.where(cond, x, 1.0); y = ops.where(cond, ops.log(safe), 0.0)`.",
        ]
    else:
        if culprit.op is not None:
            evidence.append(
                f"the first non-finite gradient comes from the derivative of {culprit.op.op} "
                f"({culprit.op.count} value(s)); its inputs peak at |x| = "
                f"{culprit.op.input_peak:.3g}"
            )
        fixes = [
            f"The derivative of {op.op if op else 'an op'} is infinite where it is evaluated "
            "(sqrt or a norm at 0, x^p with p < 1 at 0): add an epsilon inside, e.g. "
            "`ops.sqrt(ops.sum(x * x, axis=-1) + 1e-12)`.",
        ]
    if culprit.samples:
        evidence.append(
            f"the gradient is non-finite for {len(culprit.samples)} sample(s): positions "
            f"{listed(culprit.samples)}"
        )
    return Diagnosis(
        "unstable_gradient",
        0.8,
        [Alternative("unstable_op", 0.1)],
        layer=culprit.layer,
        op=op.op if op else None,
        samples=culprit.samples,
        evidence=evidence,
        fixes=[*fixes, "Clipping gradients does not help here: a NaN stays NaN."],
    )


def _loss_fault(facts: Facts, culprit: Any) -> Diagnosis | None:
    """Forward finite, loss not: what in the loss breaks, on which samples."""
    replay = facts.replay()
    loss = losses.describe(facts.model, facts.loss)
    preds = np.asarray(
        replay.y_pred
        if not isinstance(replay.y_pred, list | tuple | dict)
        else leaves(replay.y_pred)[0],
        dtype=np.float64,
    )
    low, high = float(np.nanmin(preds)), float(np.nanmax(preds))
    if max(abs(low), abs(high)) > 1e15:
        return None  # predictions already diverged; the loss merely overflows: see magnitudes
    name = loss.name if loss is not None else replay.loss_name
    bad = culprit.samples
    op = culprit.op.op if culprit.op is not None else None
    evidence = [
        f"the model's outputs are finite (range [{low:.3g}, {high:.3g}]) but the loss "
        + (f"'{name}' " if name else "")
        + "is not"
        + (f" for {len(bad)} sample(s): positions {listed(bad)}" if bad else "")
    ]
    if culprit.op is not None:
        evidence.append(f"inside the loss, {culprit.op.describe()}")
    # Targets are blamed only where the predictions are not: a log of the prediction fails for
    # every target once the prediction is <= 0 (zero counts are ordinary Poisson targets).
    past_zero = None if _past_zero(preds, bad) else _targets_past_zero(facts, bad)
    if past_zero is not None:
        return Diagnosis(
            "invalid_target",
            0.8,
            [Alternative("unstable_loss", 0.15)],
            samples=bad,
            op=op,
            evidence=[*evidence, past_zero],
            fixes=[
                f"Those targets are outside the domain of '{name}' (it takes a log or divides by "
                "them): fix or drop those records, or use a loss defined there (e.g. "
                "`ops.log1p` of the targets, Tweedie / MSE for zero-valued ones)."
            ],
        )
    activation = losses.output_activation(facts.model)
    units = output_units(facts.model)
    mismatch = _activation_mismatch(loss, activation, units, low, high)
    if mismatch is not None:
        return Diagnosis(
            "output_loss_mismatch",
            0.85,
            [Alternative("unstable_loss", 0.1)],
            samples=bad,
            op=op,
            evidence=[*evidence, mismatch[0]],
            fixes=[mismatch[1]],
        )
    overflowed = op in _OP_FIXES and op not in ("Log", "RealDiv", "Reciprocal")
    if not overflowed and (low <= 0.0 or high >= 1.0):
        evidence.append(
            f"predictions reach {low:g} / {high:g}: a log of 0 (or of a negative), or a "
            "division by 0, inside the loss"
        )
    return Diagnosis(
        "unstable_loss",
        0.8,
        [Alternative("output_loss_mismatch", 0.1)],
        samples=bad,
        op=op,
        evidence=evidence,
        fixes=[_OP_FIXES[op], "Or use a built-in loss, which is written to be numerically safe."]
        if overflowed
        else [
            "Clip inside your loss: `ops.log(ops.clip(p, 1e-7, 1.0 - 1e-7))`, or use the built-in "
            "loss (`keras.losses.BinaryCrossentropy()`), which is numerically safe.",
            "Better: output logits (no final sigmoid/softmax) and use `from_logits=True`.",
        ],
    )


def _past_zero(preds: np.ndarray, bad: list[int]) -> bool:
    """Whether exactly the samples ``bad`` have a prediction <= 0 (every other sample's are all
    positive)."""
    if not bad or preds.ndim == 0 or len(preds) <= max(bad):
        return False
    lowest = preds.reshape(len(preds), -1).min(axis=1)
    good = np.setdiff1d(np.arange(len(preds)), bad)
    return bool((lowest[bad] <= 0).all() and (lowest[good] > 0).all())


def _targets_past_zero(facts: Facts, bad: list[int]) -> str | None:
    """Evidence that exactly the samples whose loss is non-finite have targets on the wrong side
    of zero (0 or negative where every other target is positive): outside the loss's domain.

    Single-valued targets only (amounts, counts, prices): in class targets (one-hot rows,
    distributions) zeros are ordinary entries."""
    y = flat_samples(only_array(facts.batch.y)) if facts.batch is not None else None
    if y is None or y.dtype.kind not in "fiu" or y.shape[1] != 1 or not bad or len(bad) >= len(y):
        return None
    good = np.setdiff1d(np.arange(len(y)), bad)
    low = float(y[good].min())
    worst = y[bad].min(axis=1)
    if low > 0 and (worst <= 0).all():
        side = "zero or negative"
    elif low >= 0 and (worst < 0).all():
        side = "negative"
    else:
        return None
    return (
        f"the non-finite samples are exactly those whose targets are {side} "
        f"({', '.join(f'{v:g}' for v in worst[:MAX_LISTED])}), while every other target in the "
        f"batch is {'positive' if low > 0 else 'non-negative'} (smallest {low:.3g})"
    )


def _activation_mismatch(
    loss: losses.LossInfo | None,
    activation: str | None,
    units: int | None,
    low: float,
    high: float,
) -> tuple[str, str] | None:
    """(evidence, fix) when the output activation cannot feed the loss; ``low`` and ``high``
    are the replayed predictions' range."""
    if activation == "softmax" and units == 1:
        return (
            "the output is a softmax over a single unit, which is 1 for every input: the "
            "loss sees log(0) or 0/0 for the other class",
            "For two classes use one unit with `activation='sigmoid'` and binary cross-entropy, "
            "or two units with softmax and (sparse) categorical cross-entropy.",
        )
    if loss is None:
        return None
    if loss.from_logits and activation in ("softmax", "sigmoid"):
        return (
            f"the loss '{loss.name}' is told `from_logits=True`, but the output already applies "
            f"{activation}: probabilities are treated as logits",
            f"Drop the output {activation} (keep the layer linear) or pass `from_logits=False`.",
        )
    unbounded = activation in ("relu", "linear", "elu", "leaky_relu", None)
    if loss.needs_probabilities and not loss.from_logits and unbounded:
        if low < 0 or high > 1 or low == 0:
            return (
                f"the output activation is {activation or 'linear'}, but '{loss.name}' expects "
                f"probabilities; the outputs span [{low:.3g}, {high:.3g}]",
                "Use `activation='softmax'` (or 'sigmoid' for one unit) on the output layer, "
                "or keep it linear and pass `from_logits=True` to the loss.",
            )
    positive = activation in ("exponential", "softplus", "sigmoid", "softmax")
    if loss.needs_positive and not positive and low <= 0:
        return (
            f"'{loss.name}' takes the log of the prediction, but the output activation is "
            f"{activation or 'linear'} and predictions reach {low:.3g}",
            "Use `activation='exponential'` or 'softplus' on the output for count data.",
        )
    return None


def _saturated_output(facts: Facts) -> Diagnosis | None:
    """No loss to replay (one written inline in a hand-written loop), yet the loss went
    non-finite with a finite forward pass: probabilities that reached exactly 0 or 1 are where a
    hand-written log(p) or log(1 - p) is infinite."""
    replay = facts.replay()
    if replay is None or replay.loss is not None or replay.culprit is not None:
        return None
    activation = losses.output_activation(facts.model)
    if not facts.flags & st.LOSS_NONFINITE or activation not in ("sigmoid", "softmax"):
        return None
    p = flat_samples(only_array(tf_numpy(replay.y_pred)))
    if p is None:
        return None
    rows = np.flatnonzero(((p == 0.0) | (p == 1.0)).any(axis=1)).tolist()
    if not rows:
        return None
    return Diagnosis(
        "unstable_loss",
        0.6,
        [Alternative("output_loss_mismatch", 0.2)],
        samples=rows,
        evidence=[
            f"the forward pass is finite, but the {activation} output is exactly 0 or 1 for "
            f"{len(rows)} sample(s) (positions {listed(rows)}): a log(p) or log(1 - p) in the "
            "loss is -inf there, and the loss went non-finite",
            "the loss was computed by hand inside the training loop, so it could not be replayed",
        ],
        fixes=[
            "Clip before the log: `tf.math.log(tf.clip_by_value(p, 1e-7, 1 - 1e-7))`, or use "
            "`keras.losses.BinaryCrossentropy()`, which is numerically safe.",
            "Better: output logits (no final sigmoid/softmax) and use `from_logits=True`.",
        ],
    )


def _inline_loss(facts: Facts) -> Diagnosis | None:
    """A loss written inline in a hand-written loop (no loss object to replay) went non-finite
    while the model's outputs for the batch are finite and of ordinary size: the loss computation
    is where it broke, though not which op or which samples."""
    replay = facts.replay()
    if replay is None or replay.loss is not None or replay.culprit is not None:
        return None
    if not facts.flags & st.LOSS_NONFINITE:
        return None
    preds = [np.abs(np.asarray(v, dtype=np.float64)) for v in leaves(tf_numpy(replay.y_pred))]
    if not preds or not all(np.isfinite(p).all() for p in preds):
        return None
    peak = max(float(p.max(initial=0.0)) for p in preds)
    if peak > 1e15:
        return None  # outputs already diverged: the loss merely overflows
    return Diagnosis(
        "unstable_loss",
        0.5,
        [Alternative("invalid_target", 0.3)],
        evidence=[
            f"replaying the batch, the model's outputs are finite (up to |y| = {peak:.3g}), but "
            "the loss computed from them is not",
            "the loss is written inline in the training loop, so it could not be replayed to "
            "name the op and the samples: a log of 0, a division by 0, or an exp overflow in "
            "it, or a target outside what it accepts (a rate of exactly 0 or 1 under a log)",
        ],
        fixes=[
            "Make the loss safe where it takes logs or divides: `ops.log(ops.maximum(v, 1e-7))`, "
            "`ops.log(ops.clip(p, 1e-7, 1 - 1e-7))`, `x / (d + 1e-8)`; and check the targets at "
            "the edge of its domain.",
            "Or compute it with a Keras loss object (`keras.losses.*`, or your own "
            "`keras.losses.Loss`): nanguard then replays it and names the op and the samples.",
        ],
    )


def tf_numpy(value: Any) -> Any:
    """A (nested) tensor value as numpy arrays."""
    import tensorflow as tf

    return tf.nest.map_structure(lambda v: np.asarray(v), value)


def _from_magnitudes(facts: Facts) -> Diagnosis | None:
    culprit = facts.culprit()
    found = magnitude.explain(facts, culprit)
    if found is not None:
        # The layer where a value first went non-finite is a measured fact (CONTRACT's `layer`);
        # the op where it overflowed is not the cause here, so it is not named.
        if culprit is not None:
            found.layer = found.layer or culprit.layer
        return found
    if culprit is None:
        return None
    if culprit.stage == "loss":
        return _blown_up(facts)
    op = culprit.masked or culprit.op
    if culprit.stage == "backward" and culprit.layer is not None:
        return _gradient_fault(facts, culprit)
    if culprit.layer is None:
        return None
    return Diagnosis(
        "unstable_op",
        0.5,
        [Alternative("learning_rate_too_high", 0.2), Alternative("unscaled_input", 0.1)],
        layer=culprit.layer,
        op=op.op if op else None,
        samples=culprit.samples,
        evidence=[
            f"replaying the batch: layer '{culprit.layer}' outputs non-finite values while its "
            f"inputs are finite (they peak at |x| = {culprit.input_peak:.3g})"
            + (f"; {op.describe()}" if op else "")
        ],
        fixes=_op_fixes(op.op if op else None, culprit.layer),
    )


def _blown_up(facts: Facts) -> Diagnosis | None:
    """The predictions are finite but so large that the loss overflows: name the layer that
    magnified its input the most on the way there."""
    found = facts.replay().blown_up()
    if found is None:
        return None
    name, low, high = found
    return Diagnosis(
        "unstable_op",
        0.6,
        [Alternative("input_outlier", 0.2), Alternative("learning_rate_too_high", 0.1)],
        layer=name,
        evidence=[
            f"replaying the batch: layer '{name}' turns inputs peaking at |x| = {low:.3g} into "
            f"outputs peaking at {high:.3g}; the loss then overflows float32",
        ],
        fixes=_op_fixes(None, name),
    )


def _unknown(facts: Facts) -> Diagnosis:
    parts = []
    if facts.flags & st.LOSS_NONFINITE:
        parts.append("the loss")
    if facts.flags & st.GRAD_NONFINITE:
        parts.append("gradients")
    if facts.flags & st.WEIGHT_NONFINITE:
        parts.append("the updated weights")
    seen = " and ".join(parts) or "the step"
    kept = facts.batch
    evidence = [
        f"{seen} became non-finite (the batch was not kept)"
        if kept is None
        else f"{seen} became non-finite; the inputs and targets of the batch were finite"
        if kept.y is not None
        else f"{seen} became non-finite; the inputs of the batch were finite (its targets were "
        "not seen: no Keras loss took them)"
    ]
    replay = facts.replay() if facts.batch is not None else None
    if facts.replay_error:
        evidence.append(f"the step could not be replayed ({facts.replay_error[:200]})")
    elif replay is not None and replay.culprit is None:
        evidence.append("replaying the batch on the pre-step weights gives finite values")
    return Diagnosis(
        "unknown",
        0.2,
        evidence=evidence,
        fixes=["Lower the learning rate and clip gradients (`clipnorm=1.0`) as a first remedy."],
    )
