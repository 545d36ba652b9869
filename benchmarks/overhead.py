"""What the guard costs per training step, against plain Keras measured in the same run.

Configurations are alternated round after round on the same model so that machine drift hits
them all alike: plain ``fit``, ``TerminateOnNaN``, ``nanguard.Guard()``,
``tf.debugging.enable_check_numerics`` and Debugger V2 (``CURT_HEALTH``). Each round traces
every configuration's train function afresh (untimed warm-up), then times ``--steps`` steps; the
figure is the median step time over all timed steps, and the ratio is against plain ``fit``.

    python benchmarks/overhead.py [--rounds 5] [--steps 60] [--models mlp,cnn,gru] [--quick]
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

import nanguard
from nanguard.contract import package_version


def mlp() -> tuple[keras.Model, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8192, 256)).astype("float32")
    y = rng.integers(0, 10, 8192)
    model = keras.Sequential(
        [keras.Input((256,))]
        + [keras.layers.Dense(256, activation="relu") for _ in range(4)]
        + [keras.layers.Dense(10, activation="softmax")]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    return model, x, y


def cnn() -> tuple[keras.Model, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.random((4096, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 4096)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    return model, x, y


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
    def __init__(self, name: str) -> None:
        self.name = name
        self.dump = tempfile.mkdtemp(prefix="nanguard-dbg-") if name == "debugger_v2" else None

    def callbacks(self) -> list[keras.callbacks.Callback]:
        if self.name == "terminate_on_nan":
            return [keras.callbacks.TerminateOnNaN()]
        if self.name == "guard":
            return [self._guard]
        return []

    def __enter__(self) -> Config:
        if self.name == "check_numerics":
            tf.debugging.enable_check_numerics()
        elif self.name == "debugger_v2":
            tf.debugging.experimental.enable_dump_debug_info(
                self.dump, tensor_debug_mode="CURT_HEALTH", circular_buffer_size=1000
            )
        elif self.name == "guard":
            self._guard = nanguard.Guard(verbose=False)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.name == "check_numerics":
            tf.debugging.disable_check_numerics()
        elif self.name == "debugger_v2":
            tf.debugging.experimental.disable_dump_debug_info()


CONFIGS = ["plain", "terminate_on_nan", "guard", "check_numerics", "debugger_v2"]


def measure(name: str, rounds: int, steps: int, batch: int, configs: list[str]) -> dict[str, float]:
    keras.utils.set_random_seed(0)
    model, x, y = MODELS[name]()
    times: dict[str, list[float]] = {c: [] for c in configs}
    for _ in range(rounds):
        for config_name in configs:
            with Config(config_name) as config:
                model.train_function = None  # trace afresh under this configuration
                callbacks = config.callbacks()
                model.fit(
                    x,
                    y,
                    batch_size=batch,
                    steps_per_epoch=3,
                    epochs=1,
                    verbose=0,
                    callbacks=callbacks,
                )
                timer = StepTimer()
                model.fit(
                    x,
                    y,
                    batch_size=batch,
                    steps_per_epoch=steps,
                    epochs=1,
                    verbose=0,
                    callbacks=[*callbacks, timer],
                )
                times[config_name].extend(timer.times[1:])
    return {c: statistics.median(t) for c, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--models", default="mlp,cnn,gru")
    parser.add_argument("--quick", action="store_true", help="plain and guard only")
    args = parser.parse_args()
    configs = ["plain", "guard"] if args.quick else CONFIGS
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, nanguard {package_version()}")
    print(
        f"{args.rounds} rounds x {args.steps} steps, batch {args.batch}; median step ms (ratio to plain)\n"
    )
    header = f"{'model':6}" + "".join(f"{c:>22}" for c in configs)
    print(header)
    for name in args.models.split(","):
        medians = measure(name, args.rounds, args.steps, args.batch, configs)
        base = medians["plain"]
        cells = "".join(f"{medians[c] * 1e3:>12.2f} ({medians[c] / base:4.2f}x)" for c in configs)
        print(f"{name:6}{cells}", flush=True)


if __name__ == "__main__":
    main()
