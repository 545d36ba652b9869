"""Pre-flight: static checks of a compiled model and one batch, before the first step.

Cheap (no forward pass): the model's config, its initial weights and one batch of data. Each
check returns findings with the CONTRACT warning codes; ``Guard(preflight=True)`` records them at
step 0 and :func:`nanguard.lint` returns them.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from nanguard.contract import Run
from nanguard.monitor.batch import Batch
from nanguard.monitor.findings import Finding

CROSS_ENTROPY = ("categorical_crossentropy", "sparse_categorical_crossentropy")
PROBABILITY_LOSSES = (
    *CROSS_ENTROPY,
    "binary_crossentropy",
    "binary_focal_crossentropy",
    "categorical_focal_crossentropy",
)
POSITIVE_LOSSES = ("poisson", "kl_divergence", "kld", "mean_squared_logarithmic_error", "msle")
ADAPTIVE = ("Adam", "AdamW", "Adamax", "Nadam", "RMSprop", "Lion", "Adafactor")
ADAPTIVE_LR_HIGH = 0.05
SGD_LR_HIGH = 1.0
UNSCALED = 100.0  # typical |x| beyond which inputs are unscaled for a network (pixels: 255)
OUTLIER = 1e3


def record(run: Run, model: Any, data: Any, *, checks: bool, echo: bool) -> Batch | None:
    """At train begin: the first batch of ``fit``'s data (``data`` when ``fit`` has none), and,
    with ``checks``, every pre-flight finding recorded in ``run`` as a warning at step 0.
    Backend-neutral; never raises (the guard must never break the run it protects)."""
    from nanguard.monitor.batch import first_batch, fit_arguments
    from nanguard.monitor.findings import WarningBoard

    try:
        args = fit_arguments() or {}
        x = args.get("x") if args.get("x") is not None else data
        batch = first_batch(x, args.get("y"), args.get("batch_size"), datasets=False)
        if checks:
            board = WarningBoard(run, echo=echo)
            for finding in check(model, batch):
                board.add(0, finding)
    except Exception as exc:
        print(f"nanguard: pre-flight checks failed ({type(exc).__name__}: {exc})", file=sys.stderr)
        return None
    return batch


def check(model: Any, batch: Batch | None) -> list[Finding]:
    """Every pre-flight finding for ``model`` (compiled) and one ``batch`` (or None)."""
    found: list[Finding] = []
    loss, from_logits = loss_name(getattr(model, "loss", None))
    output = _output_layer(model)
    found += _output_vs_loss(output, loss, from_logits)
    found += _learning_rate(getattr(model, "optimizer", None))
    found += _initial_scale(model)
    found += _dtype_policy(model, output)
    if batch is not None:
        found += _inputs(batch.x)
        found += _targets(batch.y, output, loss)
    return found


def loss_name(loss: Any) -> tuple[str | None, bool]:
    """The compiled loss as a snake_case function name, and its ``from_logits``."""
    if loss is None or isinstance(loss, list | tuple | dict):
        return None, False
    if isinstance(loss, str):
        import re

        return re.sub(r"(?<!^)(?=[A-Z])", "_", loss).lower(), False
    fn = getattr(loss, "fn", loss)
    kwargs = getattr(loss, "_fn_kwargs", {}) or {}
    return getattr(fn, "__name__", None), bool(kwargs.get("from_logits", False))


def _output_layer(model: Any) -> Any:
    outputs = getattr(model, "outputs", None)
    try:
        if outputs is not None and len(outputs) != 1:
            return None
    except TypeError:
        return None
    layers = getattr(model, "layers", None) or []
    return layers[-1] if layers else None


def _activation(layer: Any) -> str | None:
    if layer is None:
        return None
    if type(layer).__name__ == "Softmax":
        return "softmax"
    return getattr(getattr(layer, "activation", None), "__name__", None)


def _units(layer: Any) -> int | None:
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):
        return getattr(layer, "units", None)
    return int(shape[-1]) if shape and shape[-1] is not None else None


def _output_vs_loss(output: Any, loss: str | None, from_logits: bool) -> list[Finding]:
    activation, units = _activation(output), _units(output)
    if output is None or loss is None or activation is None:
        return []
    name = output.name
    if loss in PROBABILITY_LOSSES and not from_logits and activation in ("linear", "relu"):
        return [
            Finding(
                "output_loss_mismatch",
                "critical",
                f"{loss} expects probabilities but the output layer's activation is "
                f"{activation}: values outside (0, 1) give log of <= 0. Use "
                f"{'sigmoid' if loss.startswith('binary') else 'softmax'} on the output, or "
                "keep it linear and pass `from_logits=True` to the loss.",
                layer=name,
            )
        ]
    if from_logits and activation in ("softmax", "sigmoid"):
        return [
            Finding(
                "output_loss_mismatch",
                "warning",
                f"the loss has from_logits=True but the output already applies {activation}: "
                "probabilities are treated as logits (slow, wrong gradients). Drop the "
                "activation or set from_logits=False.",
                layer=name,
            )
        ]
    if activation == "softmax" and units == 1:
        return [
            Finding(
                "output_loss_mismatch",
                "critical",
                "softmax over a single unit is always 1: nothing can be learned. Use sigmoid "
                "with binary_crossentropy, or one unit per class.",
                layer=name,
            )
        ]
    if loss in POSITIVE_LOSSES and activation in ("linear", "tanh"):
        return [
            Finding(
                "output_loss_mismatch",
                "warning",
                f"{loss} needs positive predictions but the output activation {activation} can "
                "go to <= 0 (log of <= 0). Use softplus or exp on the output.",
                layer=name,
            )
        ]
    return []


def _learning_rate(optimizer: Any) -> list[Finding]:
    if optimizer is None:
        return []
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    kind = type(inner).__name__
    try:
        lr = float(np.asarray(inner.learning_rate))
    except (AttributeError, TypeError, ValueError):
        return []
    limit = ADAPTIVE_LR_HIGH if kind in ADAPTIVE else SGD_LR_HIGH if kind == "SGD" else None
    if limit is None or lr < limit:
        return []
    usual = "1e-4 to 1e-2" if kind in ADAPTIVE else "1e-3 to 1e-1"
    return [
        Finding(
            "learning_rate_too_high",
            "warning",
            f"learning rate {lr:g} for {kind}, whose usual range is {usual}. Lower it, or find "
            "the largest stable rate with `nanguard lr-find`.",
        )
    ]


def _initial_scale(model: Any) -> list[Finding]:
    """Kernels far from variance-preserving scale (rms * sqrt(fan_in) near 1 to 1.5)."""
    found = []
    for layer in getattr(model, "layers", None) or []:
        kernel = getattr(layer, "kernel", None)
        if kernel is None or len(kernel.shape) < 2 or type(layer).__name__ == "Embedding":
            continue
        fan_in = int(np.prod(kernel.shape[:-1]))
        rms = _rms(kernel)  # computed where the weights live: one number comes back
        gain = rms * float(np.sqrt(fan_in))
        if gain > 4:
            found.append(
                Finding(
                    "exploding_gradients",
                    "warning",
                    f"initial kernel scale is {gain:.3g}x variance-preserving (rms "
                    f"{rms:.3g}, fan-in {fan_in}): activations and "
                    "gradients grow that much per layer. Use glorot_uniform or he_normal.",
                    layer=layer.name,
                )
            )
        elif gain < 1e-2:
            found.append(
                Finding(
                    "vanishing_gradients",
                    "warning",
                    f"initial kernel scale is {gain:.2g}x variance-preserving (fan-in {fan_in}): "
                    "signals shrink that much per layer and symmetric units learn alike. Use "
                    "glorot_uniform or he_normal.",
                    layer=layer.name,
                )
            )
    return found


def _rms(kernel: Any) -> float:
    from keras import ops

    square = ops.square(ops.cast(kernel, "float32"))
    return float(np.sqrt(ops.convert_to_numpy(ops.mean(square))))


def _dtype_policy(model: Any, output: Any) -> list[Finding]:
    policy = getattr(getattr(model, "dtype_policy", None), "name", "") or ""
    if output is not None and getattr(output, "compute_dtype", None) == "float16":
        return [
            Finding(
                "float16_overflow_risk",
                "warning",
                f"the output layer computes in float16 under the {policy or 'float16'} policy: "
                "its logits and softmax overflow or lose precision past 65504. Give it "
                "`dtype='float32'`.",
                layer=output.name,
            )
        ]
    if policy == "float16":
        return [
            Finding(
                "float16_overflow_risk",
                "warning",
                "the whole model, weights included, is float16: updates underflow and large "
                "values overflow. Use the 'mixed_float16' policy (float32 weights, loss scaling).",
            )
        ]
    return []


# -- the batch ---------------------------------------------------------------------------------


def _arrays(value: Any) -> list[tuple[str, np.ndarray]]:
    if value is None:
        return []
    if isinstance(value, dict):
        return [(str(k), a) for k, v in value.items() for _, a in _arrays(v)]
    if isinstance(value, list | tuple):
        return [(f"input {i}", a) for i, v in enumerate(value) for _, a in _arrays(v)]
    arr = np.asarray(value)
    return [("input", arr)] if arr.dtype.kind in "fiub" and arr.ndim > 0 else []


def _inputs(x: Any) -> list[Finding]:
    found = []
    for name, arr in _arrays(x):
        if arr.dtype.kind != "f":
            continue
        flat = arr.reshape(len(arr), -1).astype(np.float64)
        bad = ~np.isfinite(flat)
        if bad.any():
            rows = np.flatnonzero(bad.any(axis=1))
            found.append(
                Finding(
                    "input_nonfinite",
                    "critical",
                    f"{int(bad.sum())} NaN/Inf value(s) in {name} of the first batch, samples "
                    f"{', '.join(map(str, rows[:10].tolist()))}. Drop or repair them.",
                )
            )
            continue
        per_sample = np.abs(flat).max(axis=1)
        peak, typical = float(per_sample.max()), float(np.median(per_sample))
        if typical > UNSCALED:
            found.append(
                Finding(
                    "unscaled_input",
                    "warning",
                    f"{name} reaches |x| = {peak:.3g} (a typical sample peaks at {typical:.3g}): "
                    "unscaled inputs saturate or kill units and destabilize steps. Normalize "
                    "(`keras.layers.Normalization`, or x / 255.0 for pixels).",
                )
            )
        elif peak > OUTLIER and peak > 100 * max(typical, 1e-12):
            found.append(
                Finding(
                    "input_outlier",
                    "warning",
                    f"sample {int(per_sample.argmax())} of the first batch reaches |x| = "
                    f"{peak:.3g} while a typical sample peaks at {typical:.3g}.",
                )
            )
    return found


def _targets(y: Any, output: Any, loss: str | None) -> list[Finding]:
    arrays = _arrays(y)
    if len(arrays) != 1:
        return []
    target = arrays[0][1]
    if target.dtype.kind == "f" and not np.isfinite(target).all():
        return [
            Finding(
                "target_nonfinite",
                "critical",
                f"{int((~np.isfinite(target)).sum())} NaN/Inf target(s) in the first batch.",
            )
        ]
    units = _units(output) if output is not None else None
    if loss == "sparse_categorical_crossentropy" and units:
        labels = target.reshape(-1)
        outside = (labels < 0) | (labels >= units)
        if outside.any():
            return [
                Finding(
                    "label_out_of_range",
                    "critical",
                    f"labels {sorted(set(labels[outside].tolist()))[:5]} in the first batch are "
                    f"outside [0, {units}) (the output layer has {units} units). Remap them or "
                    "widen the output layer.",
                )
            ]
    if loss == "binary_crossentropy" and ((target < 0) | (target > 1)).any():
        return [
            Finding(
                "invalid_target",
                "critical",
                f"binary cross-entropy targets must be in [0, 1]; the first batch has "
                f"{float(target.min()):g} to {float(target.max()):g}.",
            )
        ]
    if loss in POSITIVE_LOSSES and (target < 0).any():
        return [
            Finding(
                "invalid_target",
                "critical",
                f"{loss} needs non-negative targets; the first batch has {float(target.min()):g}.",
            )
        ]
    return []
