"""What the guard costs per training step, against plain Keras measured in the same run.

Configurations: plain ``fit``, ``TerminateOnNaN``, ``nanguard.Guard()`` (pre-flight and
precursor monitors on, activation statistics at their default rate),
``guard+activations`` (``Guard(activation_every=10)``: a forward pass over the kept batch every
10 steps, 20x the default rate), ``guard-heal`` (``Guard("heal")``: the host reads the guard's
status after every step, the update reads the heal controls, healthy-state snapshots),
``tf.debugging.enable_check_numerics`` and Debugger V2 (``CURT_HEALTH``). Each gets its own copy
of the model (same seed), traced once under its configuration. Then, round after round, every
configuration trains ``--steps`` steps, in an order that rotates each round; a round's ratio is a
configuration's median step time over plain ``fit``'s in the same round, so the slow drift of a
shared machine cancels out. Debugger V2 runs in a second phase against plain ``fit`` alone,
because it cannot be switched off and on again. Printed: the median ratio over rounds and its
interquartile range, for the median step time (the steady step) and for the mean step time
(which also carries the host's periodic work: weight samples, activation samples).

    python benchmarks/overhead.py [--rounds 15] [--steps 40] [--batch 64] [--models mlp,cnn,gru]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf
from models import cnn, mlp, resnet

import nanguard
from nanguard.contract import package_version


def gru() -> tuple[keras.Model, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4096, 30, 16)).astype("float32")
    y = rng.normal(size=(4096, 1)).astype("float32")
    model = keras.Sequential([keras.Input((30, 16)), keras.layers.GRU(64), keras.layers.Dense(1)])
    model.compile("adam", "mse")
    return model, x, y


MODELS: dict[str, Callable[[], tuple[keras.Model, np.ndarray, np.ndarray]]] = {
    "mlp": mlp,
    "cnn": cnn,
    "gru": gru,
    "resnet": resnet,  # not in the default --models: tens of ms per step
}


class StepTimer(keras.callbacks.Callback):
    """Wall time between consecutive batch ends: the whole step as the user sees it."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        if batch == 0:
            self._last = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        now = time.perf_counter()
        self.times.append(now - self._last)
        self._last = now


class Config:
    """A configuration's callbacks, and the TensorFlow switch it needs while it runs."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.guard = GUARDS[name]() if name in GUARDS else None

    def callbacks(self) -> list[keras.callbacks.Callback]:
        if self.name == "terminate_on_nan":
            return [keras.callbacks.TerminateOnNaN()]
        return [self.guard] if self.guard is not None else []

    def __enter__(self) -> Config:
        if self.name == "check_numerics":
            tf.debugging.enable_check_numerics()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.name == "check_numerics":
            tf.debugging.disable_check_numerics()


def enable_debugger_v2() -> None:
    """Debugger V2 stays on once enabled: turning it off and on again crashes TF 2.21 here."""
    tf.debugging.experimental.enable_dump_debug_info(
        tempfile.mkdtemp(prefix="nanguard-dbg-"),
        tensor_debug_mode="CURT_HEALTH",
        circular_buffer_size=1000,
    )


CONFIGS = [
    "plain",
    "terminate_on_nan",
    "guard",
    "guard+activations",
    "guard-heal",
    "check_numerics",
    "debugger_v2",
]
ACTIVATION_EVERY = 10
GUARDS = {
    "guard": lambda: nanguard.Guard(verbose=False),
    "guard+activations": lambda: nanguard.Guard(verbose=False, activation_every=ACTIVATION_EVERY),
    "guard-heal": lambda: nanguard.Guard("heal", verbose=False),
    # --quick only: the guard without pre-flight and monitors, to see what they add
    "guard-monitors": lambda: nanguard.Guard(
        verbose=False, preflight=False, monitors=False, activation_every=0
    ),
}


def _fit(model: keras.Model, x: Any, y: Any, config: Config, steps: int, batch: int) -> list[float]:
    timer = StepTimer()
    with config:
        model.fit(
            x,
            y,
            batch_size=batch,
            steps_per_epoch=steps,
            epochs=1,
            verbose=0,
            callbacks=[*config.callbacks(), timer],
        )
    return timer.times[1:]


Models = dict[str, tuple[keras.Model, np.ndarray, np.ndarray]]


def prepare(name: str, configs: list[Config], batch: int) -> Models:
    """A fresh copy of the model per configuration, its train function traced under it."""
    models = {}
    for config in configs:
        keras.utils.set_random_seed(0)
        models[config.name] = MODELS[name]()
        _fit(*models[config.name], config, 3, batch)
    return models


Ratios = dict[str, dict[str, list[float]]]  # statistic -> configuration -> one per round


def alternate(configs: list[Config], models: Models, rounds: int, steps: int, batch: int) -> Ratios:
    """Per configuration, its median and mean step time over plain ``fit``'s in each round
    (rounds rotate the order)."""
    ratios: Ratios = {stat: {c.name: [] for c in configs} for stat in STATISTICS}
    for r in range(rounds):
        times = {}
        for config in configs[r % len(configs) :] + configs[: r % len(configs)]:
            times[config.name] = _fit(*models[config.name], config, steps, batch)
        for stat, measure in STATISTICS.items():
            for c in configs:
                ratios[stat][c.name].append(measure(times[c.name]) / measure(times["plain"]))
    return ratios


STATISTICS = {"median": statistics.median, "mean": statistics.fmean}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--models", default="mlp,cnn,gru")
    parser.add_argument(
        "--quick", action="store_true", help="plain and the guard (without monitors too) only"
    )
    args = parser.parse_args()
    quick = ["plain", "guard-monitors", "guard", "guard+activations", "guard-heal"]
    names = quick if args.quick else CONFIGS
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, nanguard {package_version()}")
    print(
        f"{args.rounds} rounds x {args.steps} steps, batch {args.batch}: step time over plain fit, "
        "median [interquartile range] over rounds\n"
    )
    models = args.models.split(",")
    first = [Config(c) for c in names if c != "debugger_v2"]
    results = {
        m: alternate(first, prepare(m, first, args.batch), args.rounds, args.steps, args.batch)
        for m in models
    }
    if "debugger_v2" in names:
        # Debugger V2 cannot be switched off and on again, so it comes last, against plain fit
        # models all traced before it is switched on.
        plain, debugger = Config("plain"), Config("debugger_v2")
        traced = {m: prepare(m, [plain], args.batch) for m in models}
        enable_debugger_v2()
        for m in models:
            traced[m].update(prepare(m, [debugger], args.batch))
            ratios = alternate([plain, debugger], traced[m], args.rounds, args.steps, args.batch)
            for stat in STATISTICS:
                results[m][stat]["debugger_v2"] = ratios[stat]["debugger_v2"]
    for stat in STATISTICS:
        print(f"\n{stat} step time over plain fit's")
        print(f"{'model':6}" + "".join(f"{c:>24}" for c in names[1:]))
        for m in models:
            cells = []
            for c in names[1:]:
                q1, q2, q3 = statistics.quantiles(results[m][stat][c], n=4)
                cells.append(f"{q2:.3f}x [{q1:.3f}-{q3:.3f}]".rjust(24))
            print(f"{m:6}" + "".join(cells), flush=True)


if __name__ == "__main__":
    main()
