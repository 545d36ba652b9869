"""Gradient precursors: norms that grow step after step, and layers whose gradients vanish.

Both read only the per-variable gradient norms the guard records every step (see
:mod:`nanguard.probe.apply`), over a window of recent healthy steps.
"""

from __future__ import annotations

import numpy as np

from nanguard.monitor.findings import Finding
from nanguard.monitor.layers import LayerGroup

# Where a sum of squares (a loss, the probe's own norms) overflows float32: sqrt(3.4e38).
F32_SQUARE_LIMIT = 1.8e19
GROWTH_WARNING = 10.0  # x over the window's lowest typical level, while still rising
GROWTH_CRITICAL = 1e3
SOON = 10  # steps: an overflow this close is critical
LATER = 200  # steps: an overflow further away than this is only info
VANISHED = 1e-4  # layer gradient RMS over the output layer's
VANISHED_CRITICAL = 1e-7
BLOCK = 5


def block_floor(values: np.ndarray) -> float:
    """The lowest median over consecutive blocks of ``BLOCK`` values: a typical low level that
    a single small value cannot set."""
    blocks = len(values) // BLOCK
    if blocks == 0:
        return float(np.median(values))
    return float(np.min(np.median(values[: blocks * BLOCK].reshape(blocks, BLOCK), axis=1)))


def log_slope(values: np.ndarray) -> float:
    """Least-squares slope of log(values) per step (values > 0)."""
    logs = np.log(values)
    t = np.arange(len(logs), dtype=np.float64) - (len(logs) - 1) / 2
    return float(np.dot(t, logs - logs.mean()) / max(np.dot(t, t), 1e-12))


def exploding(
    layer_norms: np.ndarray, groups: list[LayerGroup], losses: np.ndarray
) -> Finding | None:
    """Sustained growth of the global gradient norm, with the layers growing fastest.

    ``layer_norms``: steps x layers, ``losses`` their losses; healthy steps only, oldest first.
    Norms that grow while the loss falls fast are weights growing into a large-scale target,
    not a blow-up in the making.
    """
    if len(layer_norms) < 12:
        return None
    if np.median(losses[-5:]) < 0.5 * np.median(losses[:5]):
        return None
    norms = np.minimum(np.sqrt(np.square(layer_norms).sum(axis=1)), F32_SQUARE_LIMIT)
    norms = np.maximum(norms, 1e-30)
    floor = block_floor(norms[:-3])
    now = float(np.median(norms[-3:]))
    growth = now / max(floor, 1e-30)
    recent = norms[-10:]
    slope = log_slope(recent)
    rising = float(np.mean(np.diff(recent) > 0))
    if growth < GROWTH_WARNING or slope <= 0 or rising < 0.5:
        return None
    trend = log_slope(norms[-20:])
    per_step = float(np.exp(max(trend, slope)))
    left = np.log(F32_SQUARE_LIMIT / now) / np.log(per_step) if per_step > 1 else np.inf
    layers = np.minimum(layer_norms, F32_SQUARE_LIMIT)
    layer_growth = [
        float(np.median(layers[-3:, i])) / max(block_floor(layers[:-3, i]), 1e-30)
        for i in range(len(groups))
    ]
    fastest = [groups[i].name for i in np.argsort(layer_growth)[::-1][:2]]
    if growth >= GROWTH_CRITICAL or left <= SOON:
        severity = "critical"
    else:  # a slow climb, far from overflow, is worth knowing but not yet alarming
        severity = "warning" if left <= LATER else "info"
    message = (
        f"the gradient norm grew {growth:.3g}x (from {floor:.3g} to {now:.3g}) and rose on "
        f"{rising:.0%} of the last {len(recent)} steps, x{per_step:.2f} per step; fastest: "
        f"{', '.join(fastest)}"
    )
    if np.isfinite(left):
        message += (
            f"; at this rate it reaches {F32_SQUARE_LIMIT:.1e}, where its square overflows "
            f"float32, in about {max(int(left), 0)} steps"
        )
    message += ". Clip gradients (`clipnorm=1.0`) or lower the learning rate."
    return Finding("exploding_gradients", severity, message)


def vanishing(layer_norms: np.ndarray, groups: list[LayerGroup]) -> Finding | None:
    """Layers whose gradient RMS collapsed relative to the output layer's (median of the last
    20 healthy steps); reported once, at the layer nearest the input."""
    if len(layer_norms) < 10 or len(groups) < 3:
        return None
    sizes = np.array([max(g.size, 1) for g in groups], np.float64)
    rms = np.median(layer_norms[-20:] / np.sqrt(sizes), axis=0)
    out = (
        max(i for i, g in enumerate(groups) if g.has_kernel)
        if any(g.has_kernel for g in groups)
        else len(groups) - 1
    )
    if not rms[out] > 0:
        return None
    ratios = rms / rms[out]
    low = [
        i
        for i, g in enumerate(groups)
        if i != out and g.has_kernel and not g.sparse and ratios[i] < VANISHED
    ]
    if not low:
        return None
    first = low[0]
    severity = "critical" if ratios[first] < VANISHED_CRITICAL else "warning"
    message = (
        f"gradient RMS of {groups[first].name} is {ratios[first]:.2g} of the output layer "
        f"{groups[out].name}'s (median of the last {min(len(layer_norms), 20)} steps); "
        f"{len(low)} of {sum(g.has_kernel for g in groups)} weight layers are below "
        f"{VANISHED:g}: they barely learn. Use relu-family activations with He init, residual "
        "connections or normalization layers."
    )
    return Finding("vanishing_gradients", severity, message, layer=groups[first].name)
