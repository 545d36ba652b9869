"""Learning-rate precursors: a loss that climbs away from its best, updates that rival the weights.

The loss is read every step (recorded in graph); update/weight ratios come from the host's
sampled weight copies (see :mod:`nanguard.guard.recorder`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nanguard.monitor.findings import Finding
from nanguard.monitor.gradients import log_slope

DIVERGED = 10.0  # x the best typical loss
DIVERGED_CRITICAL = 1e3
UPDATE_RATIO = 0.5  # update norm over weight norm; healthy training stays near 1e-3


def global_update_ratio(weight_norms: np.ndarray, ratios: np.ndarray) -> float:
    """One sampled step's update norm over weight norm, for the whole model."""
    norms = weight_norms.astype(np.float64)
    updates = ratios.astype(np.float64) * norms
    total = float(np.sqrt(np.square(norms).sum()))
    return float(np.sqrt(np.square(updates).sum())) / total if total > 0 else 0.0


def diverging(
    losses: np.ndarray,
    norms: np.ndarray,
    *,
    initial: float,
    best: float,
    norm_at_best: float,
    update_ratio: float | None,
    learning_rate: Callable[[], float | None],
) -> Finding | None:
    """The loss climbed an order of magnitude above its best and is still climbing.

    ``losses``/``norms``: recent healthy steps, oldest first; ``initial``: the run's first
    typical loss; ``best``: its lowest typical loss so far, ``norm_at_best`` the gradient norm
    then. With the gradient norm climbing too, or updates as large as the weights, the step is
    overshooting: the learning rate is too high; otherwise the loss itself diverges.
    """
    if len(losses) < 10 or not (losses > 0).all() or best <= 0:
        return None
    now = float(np.median(losses[-3:]))
    if now < DIVERGED * best or now < 2 * initial or log_slope(losses[-10:]) <= 0:
        return None
    grad_now = float(np.median(norms[-3:]))
    overshoot = grad_now >= 3 * norm_at_best or (update_ratio or 0.0) >= 0.1
    severity = "critical" if now >= DIVERGED_CRITICAL * best else "warning"
    facts = f"the loss climbed to {now:.3g}, {now / best:.3g}x its best ({best:.3g})"
    if overshoot:
        facts += f", with the gradient norm from {norm_at_best:.3g} to {grad_now:.3g}"
        if update_ratio is not None:
            facts += f"; the last sampled update was {update_ratio:.2g}x the weights' norm"
        lr = learning_rate()
        lower = f" from {lr:g} to {lr / 10:g}" if lr else " 10x"
        return Finding(
            "learning_rate_too_high",
            severity,
            f"{facts}: the steps overshoot. Lower the learning rate{lower}, or add warm-up "
            "and gradient clipping; `nanguard lr-find` finds the largest stable rate.",
        )
    return Finding(
        "loss_divergence",
        severity,
        f"{facts} while the gradients stayed level. Check the loss and targets (a target "
        "outside the loss's domain, labels that shifted), or lower the learning rate.",
    )


def large_updates(update_ratio: float, learning_rate: Callable[[], float | None]) -> Finding | None:
    """A sampled update as large as half the weights it changed."""
    if update_ratio < UPDATE_RATIO:
        return None
    lr = learning_rate()
    lower = f" from {lr:g}" if lr else ""
    return Finding(
        "learning_rate_too_high",
        "critical" if update_ratio >= 10 * UPDATE_RATIO else "warning",
        f"a sampled update changed the weights by {update_ratio:.2g}x their norm (healthy "
        f"training stays near 1e-3). Lower the learning rate{lower}.",
    )
