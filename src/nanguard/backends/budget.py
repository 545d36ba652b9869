"""The skip budget and the step verdicts, shared by the JAX and PyTorch guards.

TensorFlow-free on purpose (``nanguard.probe.state`` holds the TensorFlow twin): the rules are
the same, so a run is stopped at the same step whatever the backend. ``advance`` is written with
plain arithmetic so that the JAX guard can run it on traced scalars inside ``jit`` and the
PyTorch guard on Python ints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Bits of a step's verdict (the same values as nanguard.probe.state's flags).
LOSS_NONFINITE = 1
GRAD_NONFINITE = 2
WEIGHT_NONFINITE = 4


@dataclass
class Limits:
    """Bounds on how long the ``skip`` policy keeps going."""

    max_consecutive: int = 10
    max_total: int = 100


def symptom(flags: int) -> str:
    """The report's symptom of a bad step: the first of loss, gradients, weights that failed."""
    if flags & LOSS_NONFINITE:
        return "nonfinite_loss"
    if flags & GRAD_NONFINITE:
        return "nonfinite_gradient"
    return "nonfinite_weights"


def within(halted: Any, total: Any, consecutive: Any, limits: Limits) -> Any:
    """Whether the run may take another step: no stop yet, and the skip budget not spent."""
    return (halted <= 0) & (total <= limits.max_total) & (consecutive <= limits.max_consecutive)


def advance(
    counts: tuple[Any, Any, Any, Any], bad: Any, limits: Limits, stop: bool
) -> tuple[tuple[Any, Any, Any, Any], Any]:
    """One step of the guard's counters ``(step, halted, total_bad, consecutive_bad)``.

    Returns the new counters and ``live``: whether the run could still take this step (checked
    against the counts before it). A dead step (after a stop, or once the budget is spent)
    changes nothing and is not counted, as on TensorFlow; so ``max_consecutive=3`` lets three bad
    steps in a row be skipped and stops at the fourth.
    """
    step, halted, total, consecutive = counts
    live = within(halted, total, consecutive, limits)
    alive = live * 1
    counted = (bad & live) * 1
    return (
        step + alive,
        halted + counted * int(stop),
        total + counted,
        (consecutive + 1) * counted + consecutive * (1 - alive),
    ), live
