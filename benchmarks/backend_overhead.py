"""What the guard costs per training step on Keras' JAX and PyTorch backends, against plain
``fit`` measured in the same run.

Plain ``fit`` and ``nanguard.Guard()`` each get their own copy of the model (same seed), trained
once to warm up (JAX traces and compiles then). Then, round after round, each trains ``--steps``
steps, the order alternating; a round's time is the whole ``fit`` call, so that nothing but the
guard itself syncs the host with the device (a per-step timer callback would, on JAX). Printed per
model: the median over rounds of guarded / plain and its interquartile range, for wall time and
for the process's CPU time (all threads: steadier than wall time on a shared machine).

    KERAS_BACKEND=jax python benchmarks/backend_overhead.py [--rounds 9] [--steps 100]
        [--batch 64] [--models mlp,cnn]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from models import cnn, mlp

import nanguard

MODELS: dict[str, Callable[[], tuple[keras.Model, np.ndarray, np.ndarray]]] = {
    "mlp": mlp,
    "cnn": lambda: cnn(batchnorm=True),  # the state a skipped step must also put back
}


def _fit(
    model: keras.Model, x: Any, y: Any, callbacks: list[Any], steps: int, batch: int
) -> tuple[float, float]:
    """Wall and CPU seconds of ``fit`` over ``steps`` steps."""
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(x, y, batch_size=batch, steps_per_epoch=steps, verbose=0, callbacks=callbacks)
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(name: str, rounds: int, steps: int, batch: int) -> dict[str, list[float]]:
    """Guarded / plain wall and CPU time of ``steps`` steps, one ratio per round."""
    runs = {}
    for config in ("plain", "guard"):
        keras.utils.set_random_seed(0)
        model, x, y = MODELS[name]()
        guard = [nanguard.Guard(verbose=False)] if config == "guard" else []
        _fit(model, x, y, guard, 3, batch)
        runs[config] = (model, x, y, guard)
    ratios: dict[str, list[float]] = {"wall": [], "cpu": []}
    for r in range(rounds):
        order = ("plain", "guard") if r % 2 == 0 else ("guard", "plain")
        times = {config: _fit(*runs[config], steps, batch) for config in order}
        for i, clock in enumerate(ratios):
            ratios[clock].append(times["guard"][i] / times["plain"][i])
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--models", default="mlp,cnn")
    args = parser.parse_args()
    print(f"backend {keras.backend.backend()}, {args.steps} steps of batch {args.batch}")
    for name in args.models.split(","):
        for clock, ratios in measure(name, args.rounds, args.steps, args.batch).items():
            q1, _, q3 = statistics.quantiles(ratios, n=4)
            print(
                f"{name:4} {clock:4} guarded/plain: median {statistics.median(ratios):.3f} "
                f"(IQR {q1:.3f}-{q3:.3f}, {args.rounds} rounds)"
            )


if __name__ == "__main__":
    main()
