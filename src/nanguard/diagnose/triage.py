"""First diagnosis of an incident: rules over measured evidence, cheapest first.

Order matters: a fault in the data explains everything downstream of it, so the batch is read
first; then what the in-graph probes recorded (labels, loss scaler, gradient and loss history);
then an eager forward replay of the batch on the pre-step weights (which the guard kept intact)
to find the first layer whose output goes non-finite. Every claim carries its number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nanguard.contract import Alternative
from nanguard.diagnose.rows import leaves
from nanguard.probe import state as st
from nanguard.probe.capture import CapturedBatch

MAX_LISTED = 10


@dataclass
class Facts:
    step: int
    flags: int
    batch: CapturedBatch | None
    history: dict[str, np.ndarray]  # rows before the step (see History.before)
    model: Any = None
    error: BaseException | None = None
    _forward: Any = field(default=None, repr=False)

    def forward(self) -> tuple[str, list[int], str] | None:
        """The eager forward replay (first non-finite layer), run once for all rules."""
        if self._forward is None:
            from nanguard.diagnose.replay import first_nonfinite_layer

            found = None
            if self.batch is not None and self.model is not None:
                found = first_nonfinite_layer(self.model, self.batch.x)
            self._forward = (found,)
        return self._forward[0]


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
        _float16,
        _replay,
        _loss_replay,
        _exploding,
        _learning_rate,
        _input_scale,
    ):
        found = rule(facts)
        if found is not None:
            return found
    return _unknown(facts)


# -- data ------------------------------------------------------------------------------------


def _flat_samples(a: Any) -> np.ndarray | None:
    if a is None:
        return None
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiub" or arr.ndim == 0:
        return None
    return arr.reshape(arr.shape[0], -1)


def _only_array(value: Any) -> Any:
    flat = leaves(value)
    return flat[0] if len(flat) == 1 else None


def _nonfinite_rows(value: Any) -> tuple[list[int], list[int], int, str | None]:
    """Samples and flat features holding NaN/Inf across all arrays of ``value``; and a name."""
    samples: set[int] = set()
    features: set[int] = set()
    count = 0
    name = None
    for path, arr in _named_leaves(value):
        flat = _flat_samples(arr)
        if flat is None or flat.dtype.kind != "f":
            continue
        bad = ~np.isfinite(flat)
        if bad.any():
            name = name or path
            rows, cols = np.nonzero(bad)
            samples.update(rows.tolist())
            features.update(cols.tolist())
            count += int(bad.sum())
    return sorted(samples), sorted(features), count, name


def _named_leaves(value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [(str(k), v) for k, v in value.items() if v is not None]
    flat = leaves(value)
    return [(f"input {i}" if len(flat) > 1 else "input", v) for i, v in enumerate(flat)]


def _listed(values: list[int]) -> str:
    head = ", ".join(str(v) for v in values[:MAX_LISTED])
    return head + (f" and {len(values) - MAX_LISTED} more" if len(values) > MAX_LISTED else "")


def _nonfinite_data(facts: Facts) -> Diagnosis | None:
    batch = facts.batch
    if batch is None:
        return None
    for which, value, cause in (
        ("inputs", batch.x, "input_nonfinite"),
        ("targets", batch.y, "target_nonfinite"),
        ("sample weights", batch.sample_weight, "target_nonfinite"),
    ):
        samples, features, count, name = _nonfinite_rows(value)
        if not samples:
            continue
        evidence = [
            f"{count} non-finite value(s) in the {which} ({name}) of {len(samples)} of "
            f"{batch.size} samples in the batch: positions {_listed(samples)}",
            f"flat feature positions within a sample: {_listed(features)}",
            "the model's weights were finite before this step (the guard skipped the update)",
        ]
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
    return [
        f"Labels must lie in [0, {units}) for a {units}-unit output. If there are really "
        f"{max(label + 1, units)} classes, give the output layer {max(label + 1, units)} units.",
        "If labels start at 1, shift them: `y = y - 1`; drop or fix rows with invalid labels.",
        "On GPU or under XLA this fault gives a silent NaN instead of an error.",
    ]


def _labels(facts: Facts) -> Diagnosis | None:
    if not facts.flags & st.LABEL_OUT_OF_RANGE or facts.batch is None:
        return None
    y = _flat_samples(_only_array(facts.batch.y))
    units = _output_units(facts.model)
    if y is None or units is None:
        return Diagnosis(
            "label_out_of_range", 0.8, evidence=["a label was outside the output's range"]
        )
    labels = y[:, 0] if y.shape[1] == 1 else y.ravel()
    finite = np.isfinite(labels) if labels.dtype.kind == "f" else np.ones(labels.shape, bool)
    outside = ~finite | (labels < 0) | (labels >= units)
    samples = np.flatnonzero(outside).tolist()
    shown = ", ".join(f"{labels[i]:g} at batch position {i}" for i in samples[:MAX_LISTED])
    worst = int(np.nanmax(labels[finite])) if finite.any() else units
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


def _output_units(model: Any) -> int | None:
    try:
        shape = model.outputs[0].shape
    except (AttributeError, IndexError, TypeError, ValueError):
        try:
            shape = model.layers[-1].output.shape
        except (AttributeError, IndexError, TypeError, ValueError):
            return None
    return int(shape[-1]) if shape and shape[-1] is not None else None


# -- mixed precision -----------------------------------------------------------------------------


def _float16(facts: Facts) -> Diagnosis | None:
    policy = getattr(getattr(facts.model, "dtype_policy", None), "compute_dtype", None)
    stuck = bool(facts.flags & st.SCALER_STUCK)
    loss_bad = bool(facts.flags & st.LOSS_NONFINITE)
    evidence = [f"the compute dtype is {policy}; float16 overflows above 65504"]
    if stuck and not loss_bad:
        # The scale fell by 2**patience and the loss stayed finite: an overflow in the backward
        # pass would have gone with the scale. What is left does not depend on it: 0/0, sqrt(0).
        return Diagnosis(
            "unstable_gradient",
            0.7,
            [Alternative("float16_overflow", 0.25)],
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
    # A non-finite loss is float16's doing only if the replay (in the same policy) shows a layer
    # computing in float16 whose output overflows while its inputs are finite.
    found = facts.forward() if loss_bad and policy == "float16" else None
    layer = _layer(facts.model, found[0]) if found else None
    if layer is None or getattr(layer, "compute_dtype", None) != "float16":
        return None
    name, samples, detail = found
    return Diagnosis(
        "float16_overflow",
        0.8,
        [Alternative("unstable_op", 0.15)],
        layer=name,
        samples=samples,
        evidence=[
            *evidence,
            f"replaying the batch: layer '{name}' (computing in float16) outputs non-finite "
            f"values while its inputs are finite ({detail})",
        ],
        fixes=[
            "Keep the overflowing layer in float32: pass `dtype='float32'` to it (and always to "
            "the final activation / softmax).",
            "Or train in float32: `keras.mixed_precision.set_global_policy('float32')`.",
        ],
    )


# -- the update -----------------------------------------------------------------------------------


def _update_overflow(facts: Facts) -> Diagnosis | None:
    if not facts.flags & st.WEIGHT_NONFINITE or facts.flags & (
        st.LOSS_NONFINITE | st.GRAD_NONFINITE
    ):
        return None
    lr = _learning_rate_value(facts.model)
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
        fixes=[
            f"Lower the learning rate{f' from {lr:g}' if lr else ''} by orders of magnitude; "
            "clip gradients (`clipnorm=1.0`).",
        ],
    )


# -- history -------------------------------------------------------------------------------------


def _finite_history(facts: Facts) -> tuple[np.ndarray, np.ndarray]:
    rows = facts.history
    if not len(rows.get("step", [])):
        return np.zeros(0), np.zeros(0)
    g = rows["grad_norms"].astype(np.float64)
    norms = np.sqrt(np.nansum(g * g, axis=1))
    ok = (rows["flags"] & st.BAD) == 0
    return norms[ok], rows["loss"][ok].astype(np.float64)


def _exploding(facts: Facts) -> Diagnosis | None:
    norms, _ = _finite_history(facts)
    if len(norms) < 8:
        return None
    window = norms[-min(len(norms), 50) :]
    early, late = float(np.median(window[: max(3, len(window) // 5)])), float(window[-1])
    rising = float(np.mean(np.diff(window[-10:]) > 0))
    if early <= 0 or late / early < 1e3 or rising < 0.7:
        return None
    steps = len(window)
    rate = (late / early) ** (1 / max(steps - 1, 1))
    return Diagnosis(
        "exploding_gradients",
        0.8,
        [Alternative("learning_rate_too_high", 0.15)],
        evidence=[
            f"the global gradient norm grew from {early:.3g} to {late:.3g} over the last {steps} "
            f"steps (x{rate:.2f} per step) before turning non-finite",
            f"it rose on {rising:.0%} of the last 10 steps",
        ],
        fixes=[
            "Clip gradients: `keras.optimizers.Adam(learning_rate=..., clipnorm=1.0)`.",
            "Lower the learning rate (x0.1) or add a warm-up schedule.",
            "For recurrent layers prefer tanh activations; add normalization layers.",
        ],
    )


def _learning_rate(facts: Facts) -> Diagnosis | None:
    norms, losses = _finite_history(facts)
    if len(losses) < 2:
        return None
    best, last = float(np.nanmin(losses)), float(losses[-1])
    # Divergence: the loss climbed an order of magnitude above its best before the NaN.
    if not last > 10 * max(best, 1e-12):
        return None
    ratios = facts.history.get("update_ratios")
    measured = ratios[np.isfinite(ratios).all(axis=1)] if ratios is not None else np.zeros((0, 0))
    big_updates = measured.size and float(np.nanmax(measured)) > 0.1
    evidence = [f"the loss rose from {best:.4g} to {last:.4g} before turning non-finite"]
    if len(norms) > 1 and np.isfinite(norms).any():
        evidence.append(
            f"the gradient norm went from {norms[0]:.3g} to {norms[-1]:.3g} over those "
            f"{len(norms)} steps"
        )
    if big_updates:
        evidence.append(
            f"one update reached {float(np.nanmax(measured)):.2g}x the norm of the weights it "
            "changed (healthy training stays near 1e-3)"
        )
    lr = _learning_rate_value(facts.model)
    fixes = [
        f"Lower the learning rate{f' from {lr:g} to {lr / 10:g}' if lr else ' by 10x'}.",
        "Clip gradients (`clipnorm=1.0`) or add a warm-up / decaying schedule.",
        "Find the largest stable rate with a learning-rate range test.",
    ]
    return Diagnosis(
        "learning_rate_too_high",
        0.7,
        [Alternative("exploding_gradients", 0.2)],
        evidence=evidence,
        fixes=fixes,
    )


def _learning_rate_value(model: Any) -> float | None:
    try:
        return float(np.asarray(model.optimizer.learning_rate))
    except (AttributeError, TypeError, ValueError):
        return None


def _input_scale(facts: Facts) -> Diagnosis | None:
    if facts.batch is None:
        return None
    x = _flat_samples(_only_array(facts.batch.x))
    if x is None:
        return None
    peak = float(np.max(np.abs(x)))
    if peak < 1e3:
        return None
    per_sample = np.max(np.abs(x), axis=1)
    median = float(np.median(per_sample))
    outliers = np.flatnonzero(per_sample > 100 * max(median, 1e-12)).tolist()
    if outliers and len(outliers) <= max(1, len(per_sample) // 10):
        return Diagnosis(
            "input_outlier",
            0.6,
            [Alternative("unscaled_input", 0.3)],
            samples=outliers,
            evidence=[
                f"sample(s) {_listed(outliers)} reach |x| = {peak:.3g} while the "
                f"median sample peaks at {median:.3g}"
            ],
            fixes=["Find and fix or drop those records; clip or winsorize the inputs."],
        )
    return Diagnosis(
        "unscaled_input",
        0.6,
        [Alternative("learning_rate_too_high", 0.2)],
        evidence=[f"inputs reach |x| = {peak:.3g}; a typical sample peaks at {median:.3g}"],
        fixes=[
            "Scale the inputs: `keras.layers.Normalization()` adapted on the data, or "
            "`x = (x - x.mean(0)) / (x.std(0) + 1e-8)`; for pixels `x / 255.0`."
        ],
    )


# -- replay ---------------------------------------------------------------------------------------


def _layer(model: Any, name: str) -> Any:
    try:
        return model.get_layer(name)
    except (AttributeError, ValueError):
        return None


def _replay(facts: Facts) -> Diagnosis | None:
    found = facts.forward()
    if found is None:
        return None
    layer, samples, detail = found
    return Diagnosis(
        "unstable_op",
        0.6,
        [Alternative("unknown", 0.2)],
        layer=layer,
        samples=samples,
        evidence=[
            f"replaying the batch on the pre-step weights: layer '{layer}' outputs non-finite "
            f"values while its inputs are finite ({detail})"
        ],
        fixes=[
            f"Make '{layer}' numerically safe: clip before exp/log/division, add an epsilon "
            "(`ops.log(ops.clip(p, 1e-7, 1.0))`, `x / (d + 1e-8)`), or use the stable built-in op."
        ],
    )


_CROSS_ENTROPY = ("crossentropy", "poisson", "kl_divergence", "kld")


def _loss_replay(facts: Facts) -> Diagnosis | None:
    """Forward was finite: recompute the loss per sample on the batch and say what breaks it."""
    from nanguard.diagnose.replay import output_activation, per_sample_loss

    if facts.batch is None or facts.model is None or not facts.flags & st.LOSS_NONFINITE:
        return None
    replayed = per_sample_loss(facts.model, facts.batch.x, facts.batch.y)
    if replayed is None:
        return None
    name, values, y_pred = replayed
    bad = np.flatnonzero(~np.isfinite(values)).tolist() if values.ndim else []
    if values.ndim and not bad:
        return None
    low, high = float(np.nanmin(y_pred)), float(np.nanmax(y_pred))
    if max(abs(low), abs(high)) > 1e15:
        return None  # predictions already diverged; the loss merely overflows: see the history
    evidence = [
        f"the model's outputs are finite (range [{low:.3g}, {high:.3g}]) but the loss "
        f"'{name}' is not" + (f" for {len(bad)} sample(s): positions {_listed(bad)}" if bad else "")
    ]
    activation = output_activation(facts.model)
    probabilistic = any(key in name.lower() for key in _CROSS_ENTROPY)
    if probabilistic and activation in ("relu", "linear", None) and (low < 0 or high > 1):
        return Diagnosis(
            "output_loss_mismatch",
            0.85,
            [Alternative("unstable_loss", 0.1)],
            samples=bad,
            evidence=[
                *evidence,
                f"the output activation is {activation or 'linear'}, "
                f"but '{name}' expects probabilities in [0, 1]",
            ],
            fixes=[
                "Use `activation='softmax'` (or 'sigmoid') on the output layer, or keep it "
                "linear and pass `from_logits=True` to the loss."
            ],
        )
    if low <= 0.0 or high >= 1.0:
        evidence.append(
            f"predictions reach {low:g} / {high:g}: a log of 0 (or of a negative) inside the loss"
        )
    return Diagnosis(
        "unstable_loss",
        0.75,
        [Alternative("output_loss_mismatch", 0.1)],
        samples=bad,
        evidence=evidence,
        fixes=[
            "Clip inside your loss: `ops.log(ops.clip(p, 1e-7, 1.0 - 1e-7))`, or use the built-in "
            "loss (`keras.losses.BinaryCrossentropy()`), which is numerically safe.",
            "Better: output logits (no final sigmoid/softmax) and use `from_logits=True`.",
        ],
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
    return Diagnosis(
        "unknown",
        0.2,
        evidence=[
            f"{seen} became non-finite; the inputs and targets of the batch were finite"
            if facts.batch is not None
            else f"{seen} became non-finite"
        ],
        fixes=["Lower the learning rate and clip gradients (`clipnorm=1.0`) as a first remedy."],
    )
