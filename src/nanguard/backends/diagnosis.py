"""What can be diagnosed without TensorFlow: the offending batch itself, and the weights.

On TensorFlow the guard replays the step layer by layer and op by op
(:mod:`nanguard.diagnose.replay`); that replay is built on TensorFlow's eager mode and op
callbacks, so on JAX and PyTorch only the batch, the weights and the pre-flight findings are read:
NaN/Inf in the batch's inputs, targets or sample weights; labels out of range; weights holding
NaN/Inf before the step (from the start: ``bad_initialization``; after an update the guard let
through, which only the PyTorch guard can do: ``learning_rate_too_high``); an output activation
the compiled loss cannot take (``output_loss_mismatch``). Anything else is reported as
``unknown``, with the pre-flight's warnings, and the evidence says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from nanguard.backends import budget
from nanguard.contract import Warning
from nanguard.diagnose.nonfinite import (
    MAX_LISTED,
    finite_weights_fix,
    learning_rate_value,
    listed,
    named_arrays,
    nonfinite_rows,
    overflow_fix,
    weights_before,
)


@dataclass
class Batch:
    """The offending step's data, as numpy."""

    x: Any
    y: Any
    sample_weight: Any

    @classmethod
    def of(cls, data: Any) -> Batch:
        """From the step's data as the trainer got it (backend tensors)."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        numpy = keras.ops.convert_to_numpy
        return cls(*(keras.tree.map_structure(numpy, v) for v in (x, y, sample_weight)))

    @property
    def size(self) -> int:
        first = next(iter(named_arrays(self.x)), None)
        return len(first[1]) if first is not None else 0


@dataclass
class Finding:
    root_cause: str = "unknown"
    confidence: float = 0.3
    layer: str | None = None
    samples: list[int] = field(default_factory=list)
    features: list[int] | None = None
    evidence: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)


def nonfinite_data(batch: Batch, before: list[str]) -> Finding | None:
    """NaN/Inf in the batch's inputs, targets or sample weights: the cause, with positions."""
    for which, value, cause, array in (
        ("inputs", batch.x, "input_nonfinite", "x"),
        ("targets", batch.y, "target_nonfinite", "y"),
        ("sample weights", batch.sample_weight, "target_nonfinite", "sample_weight"),
    ):
        ordered, flat_features, count, name = nonfinite_rows(value)
        if not ordered:
            continue
        return Finding(
            cause,
            0.97,
            samples=ordered,
            features=flat_features if which == "inputs" else None,
            evidence=[
                f"{count} non-finite value(s) in the {which} ({name}) of {len(ordered)} of "
                f"{batch.size} samples in the batch: positions {listed(ordered)}",
                f"flat feature positions within a sample: {listed(flat_features)}",
                weights_before(before),
            ],
            fixes=[
                f"Drop or repair the records with NaN/Inf {which} before training, e.g. "
                f"`keep = np.isfinite({array}.reshape(len({array}), -1)).all(axis=1); "
                "x, y = x[keep], y[keep]`",
                "Check the preprocessing that produced them: a division by a zero std or count "
                "(use `(x - mean) / (std + 1e-8)`), log of 0, or a failed parse.",
            ],
        )
    return None


def _sparse_units(model: Any) -> int | None:
    """Output units of a model compiled with a sparse categorical cross-entropy, else None."""
    loss = getattr(model, "loss", None)
    name = loss if isinstance(loss, str) else getattr(loss, "name", None)
    name = name or getattr(loss, "__name__", "")
    if "sparse_categorical" not in str(name):
        return None
    try:
        return int(model.outputs[0].shape[-1])
    except (AttributeError, IndexError, TypeError, ValueError):
        return None


def labels_out_of_range(batch: Batch, model: Any) -> Finding | None:
    """Class labels outside ``[0, units)`` under a sparse categorical cross-entropy."""
    units = _sparse_units(model)
    if units is None or not isinstance(batch.y, np.ndarray) or batch.y.dtype.kind not in "fiu":
        return None
    labels = batch.y.reshape(len(batch.y), -1)[:, 0]
    samples = np.flatnonzero(~(labels >= 0) | (labels >= units)).tolist()  # NaN is outside too
    if not samples:
        return None
    shown = ", ".join(f"{labels[i]:g} at batch position {i}" for i in samples[:MAX_LISTED])
    return Finding(
        "label_out_of_range",
        0.97,
        samples=samples,
        evidence=[f"{len(samples)} label(s) outside [0, {units}): {shown}"],
        fixes=[
            f"Labels must lie in [0, {units}) for a {units}-unit output: give the output layer "
            "as many units as there are classes, shift labels that start at 1 (`y = y - 1`), "
            "or drop rows with invalid labels."
        ],
    )


def _batch_checked(batch: Batch | None) -> list[str]:
    """What was checked of a batch that holds no fault of its own (nothing when not kept)."""
    return [] if batch is None else ["the batch's inputs, targets and sample weights are finite"]


@dataclass
class Weights:
    """The model's weights as measured: NaN/Inf-holding ones when training began (and the first
    layer that held them) and before the step diagnosed (see
    :func:`nanguard.diagnose.nonfinite.nonfinite_weights`). Measured by the host, which knows
    when the model's variables can be read (on JAX, not during ``fit``)."""

    at_start: list[str]
    owner: Any
    before: list[str]


def _weights_finding(
    model: Any, weights: Weights, batch: Batch | None, flags: int
) -> Finding | None:
    """Weights that hold NaN/Inf before the step, or after its update only, with a batch that
    holds none: the cause."""
    if not weights.before:
        if flags & (budget.LOSS_NONFINITE | budget.GRAD_NONFINITE) or not flags:
            return None
        return _overflowed(
            model,
            batch,
            "the loss and every gradient of this step were finite, but the weights after its "
            "update were not: learning rate x update overflowed float32; the guard kept that "
            "update out",
        )
    if weights.at_start:
        layer = weights.owner
        return Finding(
            "bad_initialization",
            0.85,
            layer=layer.name if layer is not None else None,
            evidence=[
                "the model's weights held non-finite values when training began (measured "
                f"before its first step): {', '.join(weights.at_start[:MAX_LISTED])}",
                *_batch_checked(batch),
            ],
            fixes=[finite_weights_fix(layer)] if layer is not None else [],
        )
    return _overflowed(
        model,
        batch,
        "the model's weights were finite when training began and hold non-finite values "
        f"before this step: {', '.join(weights.before[:MAX_LISTED])}",
        "every update applied so far came from a finite loss and finite gradients, so one of "
        "them overflowed the weights: learning rate x update past float32 (the PyTorch guard "
        "checks the loss and gradients before an update, not the weights after it)",
    )


def _overflowed(model: Any, batch: Batch | None, *evidence: str) -> Finding:
    lr = learning_rate_value(model)
    return Finding(
        "learning_rate_too_high",
        0.8,
        evidence=[*evidence, *([f"learning rate: {lr:g}"] if lr else []), *_batch_checked(batch)],
        fixes=[overflow_fix(lr)],
    )


def _configured_mismatch(preflight: list[Warning], batch: Batch | None) -> Finding | None:
    """The pre-flight's critical ``output_loss_mismatch`` (an output activation the compiled loss
    cannot take, read from the model's configuration), when nothing in the step explains more."""
    for warning in preflight:
        if warning.code == "output_loss_mismatch" and warning.severity == "critical":
            return Finding(
                "output_loss_mismatch",
                0.6,
                layer=warning.layer,
                evidence=[
                    "the model's configuration, checked before the first step, pairs the loss "
                    "with an output activation it cannot take (pre-flight, critical)",
                    *_batch_checked(batch),
                ],
                fixes=[warning.message],
            )
    return None


def diagnose(
    batch: Batch | None,
    backend: str,
    model: Any,
    weights: Weights,
    flags: int,
    preflight: list[Warning],
    error: BaseException | None = None,
) -> Finding:
    """The batch's own fault if it has one, else the weights', else the model configuration's
    (``preflight``: the run's warnings from before its first step), else ``unknown`` with what
    could not be checked."""
    if batch is not None:
        found = nonfinite_data(batch, weights.before) or labels_out_of_range(batch, model)
        if found is not None:
            return found
    found = _weights_finding(model, weights, batch, flags) or _configured_mismatch(preflight, batch)
    if found is not None:
        return found
    outcome = "the step raised before its update" if error is not None else weights_before([])
    warned = [w for w in preflight if w.severity in ("warning", "critical")]
    return Finding(
        evidence=[
            *(_batch_checked(batch) or ["the batch of this step was not kept"]),
            *(f"pre-flight warned before the first step: {w.code}: {w.message}" for w in warned),
            "the replay that names the layer, op and cause runs on the TensorFlow backend only "
            f"(this run used Keras' {backend} backend); {outcome}",
        ],
        fixes=[
            "Rerun this script with KERAS_BACKEND=tensorflow under `nanguard run` for the layer, "
            "op and root cause."
        ],
    )
