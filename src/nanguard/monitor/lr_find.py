"""``nanguard.find_lr``: a learning-rate range test, and ``nanguard lr-find script.py``.

The learning rate grows exponentially from ``start`` to ``stop`` over ``steps`` training steps
(Smith, "Cyclical Learning Rates", 2017) on the model's own weights with a fresh copy of its
optimizer; every weight is put back afterwards. The loss, smoothed, falls while the rate helps
and climbs, then blows up, once steps overshoot. The rate at the lowest smoothed loss is the
candidate largest stable rate; since one step per rate is too short for momentum or a slow
oscillation to blow up, it is then confirmed by training ``steps`` steps at it from the original
weights, halved until it holds. The suggestion is a tenth of the rate at the lowest loss (at
most a third of the confirmed one), the usual safe pick. When data grows (the "worked for 100
images, NaN at 9000" case) run it again: the stable range moves.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DIVERGED = 4.0  # x the best smoothed loss
SMOOTHING = 0.7  # exponential moving average of the loss, debiased (lag ~2 steps)
VERIFY_TRIES = 6  # halvings of the largest stable rate until it holds for ``steps`` steps


@dataclass
class LRFinding:
    learning_rates: list[float]
    losses: list[float]  # smoothed
    raw_losses: list[float]
    largest_stable: float | None  # confirmed by training at it; None: no rate held
    suggestion: float | None
    diverged_at: float | None  # the rate at which the smoothed loss blew up, if it did
    plot: Path | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.suggestion is None or self.largest_stable is None:
            return "the loss never fell: no stable learning rate in the range tried"
        blew = f"; the loss blew up at {self.diverged_at:.3g}" if self.diverged_at else ""
        return (
            f"largest stable learning rate {self.largest_stable:.3g}{blew}; "
            f"suggested learning rate {self.suggestion:.3g}"
        )


def find_lr(
    model: Any,
    data: Any,
    y: Any = None,
    *,
    batch_size: int | None = None,
    start: float = 1e-7,
    stop: float = 10.0,
    steps: int = 100,
    plot: str | Path | None = None,
) -> LRFinding:
    """Range-test the learning rate of a compiled ``model`` on ``data`` (``fit``'s ``x``: arrays,
    a dict of arrays, a ``tf.data.Dataset`` or ``PyDataset`` of batches) and ``y``.

    The model's weights (and its optimizer) are left exactly as they were. ``plot``: write the
    loss against the learning rate to this SVG file.
    """
    _check_range(start, stop, steps)
    if getattr(model, "optimizer", None) is None:
        raise ValueError("find_lr needs a compiled model (model.compile(optimizer, loss))")
    batches = _batches(data, y, batch_size or 32)
    saved = [np.array(v.numpy()) for v in model.weights]
    try:
        rates, raw = _sweep(model, batches, start, stop, steps)
        found = _read(rates, raw)
        # Confirm the largest stable rate by training at it, halving until it holds.
        for _ in range(VERIFY_TRIES):
            rate = found.largest_stable
            if rate is None or _holds(model, batches, rate, steps, saved):
                break
            found.largest_stable = rate / 2 if rate / 2 >= start else None
        if found.largest_stable is None:
            found.suggestion = None
        elif found.suggestion is not None:
            found.suggestion = min(found.suggestion, found.largest_stable / 3)
    finally:
        for variable, value in zip(model.weights, saved, strict=True):
            variable.assign(value)
    if plot is not None:
        from nanguard.monitor.svg import lr_plot

        found.plot = Path(plot)
        found.plot.parent.mkdir(parents=True, exist_ok=True)
        found.plot.write_text(lr_plot(found), encoding="utf-8")
    return found


def _check_range(start: float, stop: float, steps: int) -> None:
    if not 0 < start < stop:
        raise ValueError(f"need 0 < start < stop; got start={start}, stop={stop}")
    if steps < 10:
        raise ValueError(f"steps must be at least 10; got {steps}")


def _batches(data: Any, y: Any, batch_size: int) -> Any:
    import keras
    import tensorflow as tf

    if isinstance(data, tf.data.Dataset):
        for element in data.repeat():
            x, target, weight = keras.utils.unpack_x_y_sample_weight(element)
            yield x, target, weight
    elif isinstance(data, keras.utils.PyDataset):
        i = 0
        while True:
            x, target, weight = keras.utils.unpack_x_y_sample_weight(data[i % len(data)])
            yield x, target, weight
            i += 1
    else:
        n = len(tf.nest.flatten(data)[0])
        order = np.random.default_rng(0).permutation(n)
        i = 0
        while True:
            rows = np.take(order, np.arange(i, i + batch_size), mode="wrap")
            yield _rows(data, rows), None if y is None else _rows(y, rows), None
            i += batch_size


def _rows(value: Any, rows: np.ndarray) -> Any:
    import tensorflow as tf

    return tf.nest.map_structure(lambda a: np.asarray(a)[rows], value)


def _trainer(model: Any, rate: float) -> tuple[Any, Any]:
    """A training step on ``model`` with a fresh copy of its optimizer (no state carried)."""
    import tensorflow as tf

    base = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    optimizer = type(base).from_config({**base.get_config(), "learning_rate": rate})
    variables = model.trainable_variables

    @tf.function(reduce_retracing=True)
    def step(x: Any, y: Any, weight: Any) -> Any:
        with tf.GradientTape() as tape:
            pred = model(x, training=True)
            loss = model.compute_loss(x=x, y=y, y_pred=pred, sample_weight=weight, training=True)
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        return loss

    return step, optimizer


def _holds(model: Any, batches: Any, rate: float, steps: int, saved: list[Any]) -> bool:
    """Whether ``steps`` steps at a constant ``rate``, from the saved weights, stay finite and
    end with a lower loss than they began (the range test moves on before momentum or a slow
    oscillation can blow up; this is the check that they do not)."""
    for variable, value in zip(model.weights, saved, strict=True):
        variable.assign(value)
    step, _ = _trainer(model, rate)
    losses = []
    for _ in range(steps):
        losses.append(float(step(*next(batches))))
        if not math.isfinite(losses[-1]):
            return False
    tenth = max(1, steps // 10)
    return float(np.mean(losses[-tenth:])) < float(np.mean(losses[:tenth]))


def _sweep(model: Any, batches: Any, start: float, stop: float, steps: int) -> tuple[Any, Any]:
    step, optimizer = _trainer(model, start)
    rates = start * (stop / start) ** (np.arange(steps) / (steps - 1))
    raw: list[float] = []
    best, average = math.inf, 0.0
    for i, rate in enumerate(rates):
        optimizer.learning_rate = float(rate)
        x, y, weight = next(batches)
        loss = float(step(x, y, weight))
        raw.append(loss)
        if not math.isfinite(loss):
            break
        average = SMOOTHING * average + (1 - SMOOTHING) * loss
        smooth = average / (1 - SMOOTHING ** (i + 1))
        best = min(best, smooth)
        if i >= 5 and smooth > DIVERGED * best:
            break
    return [float(r) for r in rates[: len(raw)]], raw


def _read(rates: list[float], raw: list[float]) -> LRFinding:
    smooth, average = [], 0.0
    for i, loss in enumerate(raw):
        if not math.isfinite(loss):
            break
        average = SMOOTHING * average + (1 - SMOOTHING) * loss
        smooth.append(average / (1 - SMOOTHING ** (i + 1)))
    diverged = None
    for i in range(len(smooth)):
        if i >= 5 and smooth[i] > DIVERGED * min(smooth[: i + 1]):
            diverged = i
            break
    if diverged is None and len(smooth) < len(raw):
        diverged = len(smooth)  # the loss went non-finite
    usable = smooth[:diverged] if diverged is not None else smooth
    if len(usable) < 2 or min(usable) >= usable[0]:
        return LRFinding(rates, smooth, raw, None, None, _at(rates, diverged))
    lowest = int(np.argmin(usable))
    return LRFinding(
        rates,
        smooth,
        raw,
        largest_stable=rates[lowest],
        suggestion=rates[lowest] / 10,
        diverged_at=_at(rates, diverged),
    )


def _at(rates: list[float], index: int | None) -> float | None:
    return rates[index] if index is not None and index < len(rates) else None


def lr_find_script(
    script: str, args: list[str], *, plot: str | None, steps: int, start: float, stop: float
) -> int:
    """``nanguard lr-find``: 0 with a suggestion, 1 when no rate in the range was stable."""
    from nanguard.runscript import UsageError, script_path

    path = script_path(script, "nanguard lr-find")
    try:
        _check_range(start, stop, steps)
    except ValueError as exc:
        raise UsageError(f"nanguard lr-find: {exc}") from None
    from nanguard.monitor.intercept import print_script_error, run_until_training

    outcome = run_until_training(path, args)
    reached = outcome.reached
    if reached is None:
        if outcome.error is not None:
            print_script_error(outcome.error, "nanguard lr-find", script)
        raise UsageError(f"nanguard lr-find: {script}: ended without calling fit")
    if reached.kind != "fit" or reached.x is None:
        raise UsageError(
            f"nanguard lr-find: {script}: trains in a hand-written loop; call "
            "nanguard.find_lr(model, data) in the script instead"
        )
    try:
        found = find_lr(
            reached.model,
            reached.x,
            reached.y,
            batch_size=reached.batch_size,
            start=start,
            stop=stop,
            steps=steps,
            plot=plot,
        )
    except ValueError as exc:
        raise UsageError(f"nanguard lr-find: {exc}") from None
    print(f"nanguard lr-find: {reached.model.name}: {found.summary()}")
    if found.plot is not None:
        print(f"nanguard lr-find: plot written to {found.plot}", file=sys.stderr)
    return 0 if found.suggestion is not None else 1
