"""When values grow until float overflows: say why they grew.

A plain multiply or add that overflows is not a bug in itself. Something made the values big,
and each candidate leaves its own measurable trace:

- ``input_outlier``: a few samples of the batch are orders of magnitude larger than the rest,
  and they are the ones that go non-finite;
- ``unscaled_input``: the whole batch (inputs, or regression targets) is far from unit scale;
- ``bad_initialization``: a layer's initializer draws weights many times the scale its fan-in
  and fan-out call for (Glorot / He), the weights are still at that scale, and activations grow
  through those layers;
- ``exploding_gradients``: the gradient norm grew by orders of magnitude over the last steps,
  fastest in the layers farthest from the loss (amplified through depth or time);
- ``learning_rate_too_high``: the loss climbed away from its best value, updates were large
  against the weights, or the weights ran far from their initial scale.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from nanguard.contract import Alternative
from nanguard.diagnose.nonfinite import learning_rate_value
from nanguard.probe import state as st

OUTLIER_RATIO = 100.0  # a sample this many times the batch's typical magnitude is an outlier
UNIT_SCALE = 20.0  # typical |x| of a batch beyond which inputs count as unscaled
INIT_RATIO = 4.0  # initializer scale over the Glorot/He scale that counts as a bad init


def _flat(value: Any) -> np.ndarray | None:
    from nanguard.diagnose.triage import flat_samples, only_array

    arr = flat_samples(only_array(value))
    if arr is None or arr.dtype.kind not in "fiu" or not arr.size:
        return None
    return np.abs(arr.astype(np.float64))


# -- data -----------------------------------------------------------------------------------------


def input_outlier(facts: Any, culprit: Any) -> Any:
    """A few samples far larger than the rest of the batch, and they are where it broke."""
    from nanguard.diagnose.triage import Diagnosis, listed

    x = _flat(facts.batch.x) if facts.batch is not None else None
    if x is None or len(x) < 4:
        return None
    peaks = x.max(axis=1)
    typical = float(np.median(peaks))
    outliers = np.flatnonzero(peaks > OUTLIER_RATIO * max(typical, 1e-12)).tolist()
    if not outliers or len(outliers) > max(1, len(x) // 10):
        return None
    hit = sorted(set(outliers) & set(culprit.samples)) if culprit is not None else []
    if culprit is not None and culprit.samples and not hit:
        return None  # the extreme samples are not the ones that broke
    samples = hit or outliers
    features = sorted(
        set(np.flatnonzero((x[samples] > OUTLIER_RATIO * max(typical, 1e-12)).any(axis=0)).tolist())
    )
    evidence = [
        f"sample(s) {listed(samples)} of the batch reach |x| = {float(peaks[samples].max()):.3g} "
        f"while the median sample peaks at {typical:.3g} "
        f"({float(peaks[samples].max()) / max(typical, 1e-12):.3g}x)",
        f"the extreme values sit in flat feature position(s) {listed(features)}",
    ]
    if culprit is not None and culprit.samples:
        where = f"layer '{culprit.layer}'" if culprit.layer else f"the {culprit.stage}"
        evidence.append(
            f"replaying the batch, {where} goes non-finite for exactly "
            f"{'these samples' if set(culprit.samples) <= set(outliers) else 'them, among others'}"
        )
    return Diagnosis(
        "input_outlier",
        0.8,
        [Alternative("unstable_op", 0.1), Alternative("unscaled_input", 0.1)],
        layer=culprit.layer if culprit is not None else None,
        samples=samples,
        features=features,
        evidence=evidence,
        fixes=[
            "Find and fix or drop those records (a unit error, a sentinel like 1e6 for "
            "'missing', a corrupt parse); e.g. `keep = np.abs(x).max(axis=1) < 1e3`.",
            "Make the model robust to them: clip or winsorize inputs "
            "(`np.clip(x, lo, hi)` with percentiles), or use a robust scaler.",
        ],
    )


def _row_peaks(data: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    """Largest finite |x| of each row, a chunk at a time (no full-size temporary)."""
    peaks = np.zeros(len(data))
    for start in range(0, len(data), chunk):
        part = np.abs(data[start : start + chunk].astype(np.float64))
        part[~np.isfinite(part)] = 0.0
        peaks[start : start + chunk] = part.max(axis=1) if part.shape[1] else 0.0
    return peaks


def _loss_spike(history: dict[str, np.ndarray]) -> tuple[int, float, float] | None:
    """(step, typical loss before, loss) of the first step whose loss jumped 100x above the
    median of the steps before it."""
    loss = history.get("loss")
    if loss is None or len(loss) < 2:
        return None
    values = loss.astype(np.float64)
    for i in range(1, len(values)):
        typical = float(np.median(values[max(0, i - 50) : i]))
        if np.isfinite(values[i]) and values[i] > 100 * max(abs(typical), 1e-12):
            return int(history["step"][i]), typical, float(values[i])
    return None


def outlier_records(facts: Any) -> Any:
    """Extreme records in the training data, and a loss spike that shows when they struck.

    The batch that went non-finite need not hold them: one huge record can throw the weights
    off at its step, and the loss turns non-finite a few steps later.
    """
    from nanguard.diagnose.rows import source_inputs
    from nanguard.diagnose.triage import Diagnosis, listed

    data = source_inputs(facts.source)
    spike = _loss_spike(facts.history)
    if data is None or spike is None or len(data) < 20:
        return None
    peaks = _row_peaks(data)
    typical = float(np.median(peaks))
    rows = np.flatnonzero(peaks > OUTLIER_RATIO * max(typical, 1e-12)).tolist()
    if not rows or len(rows) > min(50, max(1, len(data) // 100)):
        return None
    step, before, after = spike
    worst = float(peaks[rows].max())
    return Diagnosis(
        "input_outlier",
        0.75,
        [Alternative("learning_rate_too_high", 0.15)],
        dataset_rows=rows,
        evidence=[
            f"{len(rows)} record(s) of the training data (rows {listed(rows)}) reach |x| = "
            f"{worst:.3g}, {worst / max(typical, 1e-12):.3g}x the median record ({typical:.3g})",
            f"the loss jumped from about {before:.4g} to {after:.4g} at step {step}, and the "
            "weights never recovered",
        ],
        fixes=[
            "Fix or drop those records (a unit error, a sentinel like 1e6 for 'missing', a "
            "corrupt parse): `keep = np.abs(x).max(axis=1) < 1e3`.",
            "Make training robust to them: clip or winsorize inputs, or clip gradients "
            "(`clipnorm=1.0`).",
        ],
    )


def _learned_from(facts: Any) -> np.ndarray | None:
    """|inputs| as the model's first weighted layer takes them, measured in the replay: a model
    that scales its inputs itself (an adapted ``Normalization`` first) is not fed unscaled data
    whatever the raw batch holds. The raw batch where the replay could not run."""
    replay = facts.replay()
    if replay is None:
        return _flat(facts.batch.x)
    return replay.first_weighted_inputs()


def unscaled(facts: Any) -> Any:
    from nanguard.diagnose import losses
    from nanguard.diagnose.triage import Diagnosis

    batch = facts.batch
    if batch is None:
        return None
    found = []
    x = _learned_from(facts)
    if x is not None and x.size:
        typical = float(np.percentile(x, 90))
        if typical >= UNIT_SCALE:
            found.append(("inputs", typical, float(x.max())))
    info = losses.describe(facts.model, facts.loss)
    y = _flat(batch.y)
    if (
        y is not None
        and info is not None
        and info.target_range is None
        and not (info.needs_probabilities)
    ):
        typical_y = float(np.percentile(y, 90))
        if typical_y >= UNIT_SCALE * 10:
            found.append(("targets", typical_y, float(y.max())))
    if not found:
        return None
    evidence = [
        f"the {which} of the batch are far from unit scale: 90% of |values| are below "
        f"{typical:.3g}, the largest is {peak:.3g}"
        for which, typical, peak in found
    ]
    evidence.append(
        "with unscaled data, gradients scale with the data, so a learning rate that suits "
        "unit-scale data makes updates far too large"
    )
    fixes = [
        "Scale the inputs: `keras.layers.Normalization()` adapted on the training data as the "
        "first layer, or `x = (x - x.mean(0)) / (x.std(0) + 1e-8)`; pixels: `x / 255.0`.",
    ]
    if any(which == "targets" for which, _, _ in found):
        fixes.append(
            "Scale regression targets too (`y_scaled = (y - y.mean()) / y.std()`), and undo "
            "it on the predictions."
        )
    return Diagnosis(
        "unscaled_input",
        0.75,
        [Alternative("learning_rate_too_high", 0.2)],
        evidence=evidence,
        fixes=fixes,
    )


# -- weights ---------------------------------------------------------------------------------------


def _usual_scale(shape: tuple[int, ...]) -> float:
    """The larger of the Glorot and He standard deviations for a kernel of this shape."""
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
    return max(np.sqrt(2.0 / (fan_in + fan_out)), np.sqrt(2.0 / max(fan_in, 1)))


def _initializer_scale(init: Any, shape: tuple[int, ...]) -> float | None:
    """The scale fresh weights from an initializer act at, drawn with a fixed seed so that the
    training's own random state is not touched: their RMS about their mean, with the mean
    counted ``sqrt(fan_in)`` times over. A unit's zero-mean weights add its inputs up with random
    signs (the sum grows as ``sqrt(fan_in)``), but a shared mean adds the positive outputs of a
    ReLU layer coherently (``fan_in`` times): uniform [0, 1] kernels multiply the signal by ~32
    per 64-unit ReLU layer, which their RMS alone (0.58, 3.3x the He scale) does not show."""
    import keras

    try:
        config = init.get_config()
        if "seed" in config:
            config["seed"] = 0
        fresh = type(init).from_config(config)
        sample = keras.ops.convert_to_numpy(fresh(shape, dtype="float32"))
    except Exception:
        return None
    sample = sample.astype(np.float64)
    fan_in = int(np.prod(shape[:-1]))
    return float(np.sqrt(np.var(sample) + np.mean(sample) ** 2 * fan_in))


_KERNELS = (("kernel", "kernel_initializer"), ("recurrent_kernel", "recurrent_initializer"))


def kernels(model: Any) -> list[tuple[str, Any, float, float]]:
    """(layer, kernel variable, initializer scale (see :func:`_initializer_scale`), usual scale) for
    each kernel (and recurrent kernel) of the model's layers."""
    from nanguard.diagnose.replay import reported_names

    names = reported_names(model)
    out = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        for attr, init_attr in _KERNELS:
            kernel, init = getattr(layer, attr, None), getattr(layer, init_attr, None)
            shape = tuple(int(d) for d in getattr(kernel, "shape", ()) or ())
            if kernel is None or init is None or len(shape) < 2:
                continue
            drawn = _initializer_scale(init, shape)
            if drawn is not None:
                out.append((names.get(id(layer), layer.name), kernel, drawn, _usual_scale(shape)))
    return out


def kernel_scales(model: Any) -> list[tuple[str, float, float, float]]:
    """(layer, RMS of the weights' finite values now (NaN if none is), initializer scale, usual
    scale) for each kernel of the model."""
    out = []
    for name, kernel, drawn, usual in kernels(model):
        now = np.asarray(kernel.numpy(), dtype=np.float64)
        now = now[np.isfinite(now)]
        rms = float(np.sqrt(np.mean(np.square(now)))) if now.size else float("nan")
        out.append((name, rms, drawn, float(usual)))
    return out


def bad_initialization(facts: Any, scales: list[tuple[str, float, float, float]]) -> Any:
    from nanguard.diagnose.triage import Diagnosis

    oversized = [
        (name, rms, init, usual) for name, rms, init, usual in scales if init >= INIT_RATIO * usual
    ]
    if not oversized:
        return None
    evidence = [
        f"layer '{name}': its kernel initializer draws weights at scale {init:.3g} (their "
        "spread, plus their mean summed over the inputs), "
        f"{init / usual:.3g}x the Glorot/He scale for its shape ({usual:.3g}); the weights are "
        + (f"now at RMS {rms:.3g}" if np.isfinite(rms) else "now all non-finite")
        for name, rms, init, usual in oversized[:4]
    ]
    replay = facts.replay()
    if replay is not None and facts.model is not None:
        peaks = [peak for _, _, _, peak in replay.activations(facts.model)]
        if len(peaks) >= 2 and peaks[0] > 0:
            evidence.append(
                "replaying the batch, activation peaks grow layer by layer: "
                + " -> ".join(f"{p:.3g}" for p in peaks[:8])
            )
    return Diagnosis(
        "bad_initialization",
        0.8,
        [Alternative("learning_rate_too_high", 0.1), Alternative("exploding_gradients", 0.1)],
        evidence=evidence,
        fixes=[
            "Use the default initializers (`kernel_initializer='glorot_uniform'`, or "
            "'he_normal' before relu) instead of "
            f"one {oversized[0][2] / oversized[0][3]:.0f}x too wide.",
            "Add normalization layers (BatchNormalization / LayerNormalization) between the "
            "deep layers.",
        ],
    )


# -- history ---------------------------------------------------------------------------------------


def _finite_history(
    history: dict[str, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(steps, global gradient norms, losses, per-variable norms) of the applied, finite steps."""
    if not len(history.get("step", [])):
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros((0, 0))
    g = history["grad_norms"].astype(np.float64)
    ok = ((history["flags"] & st.BAD) == 0) & np.isfinite(g).all(axis=1)
    norms = np.sqrt(np.sum(g[ok] * g[ok], axis=1))
    return history["step"][ok], norms, history["loss"][ok].astype(np.float64), g[ok]


def exploding(facts: Any) -> Any:
    """Gradients that blew up abruptly out of stable training.

    A learning rate that is too high makes training diverge step after step: the loss and the
    gradient norm climb together, a few times per step, from the first steps on (or from the
    end of a warm-up). Exploding gradients are amplified on their way back through depth or
    time: after a stretch of stable loss, the gradient norm jumps by orders of magnitude in one
    step, ahead of the loss.
    """
    from nanguard.diagnose.triage import Diagnosis

    steps, norms, losses, per_var = _finite_history(facts.history)
    if len(norms) < 3:
        return None
    early = slice(0, max(2, len(norms) // 5))
    base_loss = float(np.median(np.abs(losses[early])))
    stable = np.flatnonzero(np.abs(losses) <= 3 * max(base_loss, 1e-12))
    if not len(stable) or stable[-1] + 1 >= len(norms):
        return None  # no climb within the finite history
    before, first = int(stable[-1]), int(stable[-1]) + 1
    jump = float(norms[first]) / max(float(norms[before]), 1e-30)
    if jump < 100:
        return None
    evidence = [
        f"the loss stayed near {base_loss:.3g} until step {int(steps[before])}; then in one step "
        f"the gradient norm jumped from {float(norms[before]):.3g} to {float(norms[first]):.3g} "
        f"(x{jump:.3g}) while the loss went from {float(losses[before]):.3g} to "
        f"{float(losses[first]):.3g}",
        "an abrupt jump out of stable training is the gradient being amplified on its way back "
        "through depth or time (a diverging learning rate climbs a few times per step instead)",
    ]
    names = facts.variable_names
    if len(names) == per_var.shape[1]:
        ratio = per_var[first] / np.maximum(per_var[before], 1e-30)
        fastest = int(np.argmax(ratio))
        evidence.append(f"fastest growth in {names[fastest]}: x{float(ratio[fastest]):.3g}")
    return Diagnosis(
        "exploding_gradients",
        0.8,
        [Alternative("learning_rate_too_high", 0.15)],
        evidence=evidence,
        fixes=[
            "Clip gradients: `keras.optimizers.Adam(learning_rate=..., clipnorm=1.0)`.",
            "For recurrent layers prefer tanh activations and orthogonal recurrent weights with "
            "gain <= 1 (or LSTM/GRU); add normalization layers; shorten the sequences (truncated "
            "backpropagation through time).",
            "Lower the learning rate (x0.1) or add a warm-up schedule.",
        ],
    )


def backward_overflow(facts: Any, culprit: Any) -> Any:
    """The loss is finite, but ordinary ops of the backward pass overflow: the gradient grows
    beyond float range on its way back, which is what exploding gradients are."""
    from nanguard.diagnose.triage import DOMAIN_OPS, Diagnosis

    if culprit is None or culprit.stage != "backward" or culprit.masked is not None:
        return None
    if culprit.op is not None and culprit.op.op in DOMAIN_OPS:
        return None
    where = f" in layer '{culprit.layer}'" if culprit.layer else ""
    return Diagnosis(
        "exploding_gradients",
        0.65,
        [Alternative("learning_rate_too_high", 0.2)],
        evidence=[
            "replaying the step: the forward pass and the loss are finite, but the gradient "
            f"overflows float range on its way back{where}"
            + (f" ({culprit.op.describe()})" if culprit.op else ""),
        ],
        fixes=[
            "Clip gradients: `keras.optimizers.Adam(learning_rate=..., clipnorm=1.0)`.",
            "Add normalization layers; for recurrent layers prefer tanh and gain <= 1.",
        ],
    )


SCHEDULE_WINDOW = 256  # optimizer steps back that a learning-rate schedule is read over
SCHEDULE_RISE = 3.0  # a schedule step up by this factor or more is a rise


def scheduled_rise(facts: Any) -> Any:
    """The learning-rate schedule raised the rate shortly before training diverged: the loss was
    at its best before the rise and climbed after it. Read from the user's own schedule,
    evaluated at the optimizer's iterations (a deterministic function of the step)."""
    from nanguard.diagnose.triage import Diagnosis

    optimizer = getattr(getattr(facts.model, "optimizer", None), "inner_optimizer", None) or (
        getattr(facts.model, "optimizer", None)
    )
    schedule = getattr(optimizer, "_learning_rate", None)
    if not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return None
    steps, _, losses, _ = _finite_history(facts.history)
    if len(losses) < 3:
        return None
    value = keras.ops.convert_to_numpy
    now = int(value(optimizer.iterations))  # the bad step's iteration: it was not applied
    first = max(0, now - min(SCHEDULE_WINDOW, len(losses)))
    rates = np.array([float(value(schedule(k))) for k in range(first, now + 1)])
    # A step up from a positive rate (a warm-up from 0 climbs gradually, not in one step).
    ups = np.flatnonzero((rates[:-1] > 0) & (rates[1:] >= SCHEDULE_RISE * rates[:-1]))
    if not len(ups):
        return None
    rise = first + int(ups[-1]) + 1  # the iteration that first used the raised rate
    at = facts.step - (now - rise)  # the same, counted in the guard's steps
    before, after = losses[steps < at], losses[steps >= at]
    if not len(before) or not len(after) or after.max() < 3 * max(float(before.min()), 1e-12):
        return None
    low, high = float(rates[rise - first - 1]), float(rates[rise - first])
    return Diagnosis(
        "learning_rate_too_high",
        0.85,
        [Alternative("exploding_gradients", 0.1)],
        evidence=[
            f"the learning-rate schedule raised the rate from {low:.3g} to {high:.3g} at step "
            f"{at}, {facts.step - at} step(s) before this one",
            f"the loss was at best {float(before.min()):.3g} before the rise and climbed to "
            f"{float(after.max()):.3g} after it",
        ],
        fixes=[
            f"Keep the schedule at or below {low:.3g} from step {at} on (the last rate that "
            "trained stably); raise it more gently if it must rise (a warm-up), or clip "
            "gradients (`clipnorm=1.0`).",
        ],
    )


def learning_rate(facts: Any, scales: list[tuple[str, float, float, float]]) -> Any:
    from nanguard.diagnose.triage import Diagnosis

    _, norms, losses, _ = _finite_history(facts.history)
    evidence = []
    if len(losses) >= 2:
        best, last = float(np.nanmin(losses)), float(losses[-1])
        if last > 10 * max(best, 1e-12):
            evidence.append(
                f"the loss rose from {best:.4g} to {last:.4g} before turning non-finite"
            )
            if len(norms) > 1:
                evidence.append(
                    f"the gradient norm went from {norms[0]:.3g} to {norms[-1]:.3g} over those "
                    f"{len(norms)} steps"
                )
    ratios = facts.history.get("update_ratios")
    if ratios is not None and len(ratios):
        measured = ratios[np.isfinite(ratios).all(axis=1)]
        if measured.size and float(np.max(measured)) > 0.1:
            evidence.append(
                f"one update reached {float(np.max(measured)):.2g}x the norm of the weights it "
                "changed (healthy training stays near 1e-3)"
            )
    ran = [(n, rms, init) for n, rms, init, _ in scales if rms > 10 * init]
    if ran:
        name, rms, init = max(ran, key=lambda r: r[1] / r[2])
        evidence.append(
            f"the weights ran away from their initial scale: '{name}' has RMS {rms:.3g}, "
            f"{rms / init:.3g}x what its initializer drew ({init:.3g})"
        )
    if not evidence:
        return None
    lr = learning_rate_value(facts.model)
    return Diagnosis(
        "learning_rate_too_high",
        0.75,
        [Alternative("exploding_gradients", 0.15)],
        evidence=evidence,
        fixes=[
            f"Lower the learning rate{f' from {lr:g} to {lr / 10:g}' if lr else ' by 10x'}.",
            "Clip gradients (`clipnorm=1.0`) or add a warm-up / decaying schedule.",
            "Find the largest stable rate with a learning-rate range test (`nanguard lr-find`).",
        ],
    )


def explain(facts: Any, culprit: Any) -> Any:
    """The first magnitude cause the evidence supports, most specific first; None if none."""
    if culprit is not None and culprit.samples:
        found = input_outlier(facts, culprit)
        if found is not None:
            return found
    for rule in (outlier_records, unscaled):
        found = rule(facts)
        if found is not None:
            return found
    scales = kernel_scales(facts.model) if hasattr(facts.model, "_flatten_layers") else []
    for rule in (
        lambda: bad_initialization(facts, scales),
        lambda: scheduled_rise(facts),
        lambda: exploding(facts),
        lambda: learning_rate(facts, scales),
        lambda: backward_overflow(facts, culprit),
    ):
        found = rule()
        if found is not None:
            return found
    return None
