"""False alarms of the precursor monitors on healthy training runs.

Each configuration trains a small model on synthetic data (fixed seeds) that learns without any
non-finite value: noisy labels, brisk learning rates, a CNN, recurrent layers, BatchNorm,
dropout, embeddings, large-but-finite losses... guarded by ``Guard()`` with pre-flight checks,
monitors, and activation statistics sampled every 25 train-function calls (8x the default rate).
A run is a false alarm when it gets a ``critical`` warning or more than one ``warning``.

    python benchmarks/false_alarms.py [--only NAME]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import nanguard

Config = tuple[keras.Model, Any, Any, dict[str, Any]]


def _dense(units: int, activation: str | None = "relu", **kw: Any) -> keras.layers.Dense:
    return keras.layers.Dense(units, activation=activation, **kw)


def _classes(rng: np.random.Generator, n: int, d: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(n, d)).astype("float32")
    y = np.argmax(x @ rng.normal(size=(d, k)), axis=1)
    return x, y


def mlp_adam() -> Config:
    x, y = _classes(np.random.default_rng(0), 4000, 20, 5)
    model = keras.Sequential([keras.Input((20,)), _dense(64), _dense(64), _dense(5, "softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    return model, x, y, {"epochs": 3}


def noisy_labels() -> Config:
    rng = np.random.default_rng(1)
    x, y = _classes(rng, 4000, 20, 4)
    flip = rng.random(len(y)) < 0.4
    y[flip] = rng.integers(0, 4, flip.sum())
    model = keras.Sequential([keras.Input((20,)), _dense(64), _dense(4, "softmax")])
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    return model, x, y, {"epochs": 3, "batch_size": 16}


def brisk_sgd_momentum() -> Config:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4000, 10)).astype("float32")
    y = (np.sin(x[:, :1]) + 0.3 * x[:, 1:2] + 0.3 * rng.normal(size=(4000, 1))).astype("float32")
    model = keras.Sequential([keras.Input((10,)), _dense(64), _dense(1, None)])
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
    return model, x, y, {"epochs": 3}


def brisk_adam() -> Config:
    x, y = _classes(np.random.default_rng(3), 4000, 20, 3)
    model = keras.Sequential([keras.Input((20,)), _dense(32), _dense(3, "softmax")])
    model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy")
    return model, x, y, {"epochs": 3}


def cnn() -> Config:
    rng = np.random.default_rng(4)
    x = rng.random((2000, 16, 16, 1), dtype=np.float32)
    y = (x[:, :8].mean(axis=(1, 2, 3)) > x[:, 8:].mean(axis=(1, 2, 3))).astype("int32")
    model = keras.Sequential(
        [
            keras.Input((16, 16, 1)),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            _dense(2, "softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    return model, x, y, {"epochs": 2}


def gru() -> Config:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2000, 20, 8)).astype("float32")
    y = x[:, -5:, 0].mean(axis=1, keepdims=True).astype("float32")
    model = keras.Sequential([keras.Input((20, 8)), keras.layers.GRU(32), _dense(1, None)])
    model.compile("adam", "mse")
    return model, x, y, {"epochs": 2}


def lstm_classifier() -> Config:
    rng = np.random.default_rng(6)
    x = rng.normal(size=(2000, 15, 4)).astype("float32")
    y = (x[:, :, 0].sum(axis=1) > 0).astype("float32")
    model = keras.Sequential([keras.Input((15, 4)), keras.layers.LSTM(16), _dense(1, "sigmoid")])
    model.compile("adam", "binary_crossentropy")
    return model, x, y, {"epochs": 2}


def batchnorm() -> Config:
    x, y = _classes(np.random.default_rng(7), 4000, 30, 5)
    model = keras.Sequential(
        [
            keras.Input((30,)),
            _dense(64, None),
            keras.layers.BatchNormalization(),
            keras.layers.Activation("relu"),
            _dense(64, None),
            keras.layers.BatchNormalization(),
            keras.layers.Activation("relu"),
            _dense(5, "softmax"),
        ]
    )
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    return model, x, y, {"epochs": 2}


def dropout() -> Config:
    x, y = _classes(np.random.default_rng(8), 4000, 20, 5)
    model = keras.Sequential(
        [
            keras.Input((20,)),
            _dense(128),
            keras.layers.Dropout(0.5),
            _dense(128),
            keras.layers.Dropout(0.5),
            _dense(5, "softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    return model, x, y, {"epochs": 3}


def large_finite_loss() -> Config:
    rng = np.random.default_rng(9)
    x = rng.normal(size=(4000, 8)).astype("float32")
    y = (1e3 * x @ rng.normal(size=(8, 1)) + 5e3).astype("float32")
    model = keras.Sequential([keras.Input((8,)), _dense(32), _dense(1, None)])
    model.compile(keras.optimizers.Adam(0.05), "mse")  # mse ~ 3e7 at the start
    return model, x, y, {"epochs": 3}


def embedding_text() -> Config:
    rng = np.random.default_rng(10)
    x = rng.integers(1, 500, size=(3000, 20))
    y = (x[:, :5] < 250).sum(axis=1) > 2
    model = keras.Sequential(
        [
            keras.Input((20,), dtype="int32"),
            keras.layers.Embedding(500, 16),
            keras.layers.GlobalAveragePooling1D(),
            _dense(16),
            _dense(1, "sigmoid"),
        ]
    )
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    return model, x, y.astype("float32"), {"epochs": 3}


def deep_relu_he() -> Config:
    x, y = _classes(np.random.default_rng(11), 4000, 20, 4)
    layers = [_dense(64, kernel_initializer="he_normal") for _ in range(8)]
    model = keras.Sequential([keras.Input((20,)), *layers, _dense(4, "softmax")])
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    return model, x, y, {"epochs": 2}


def tanh_regression() -> Config:
    rng = np.random.default_rng(12)
    x = rng.uniform(-1, 1, size=(4000, 6)).astype("float32")
    y = (np.tanh(2 * x[:, :1]) * x[:, 1:2]).astype("float32")
    model = keras.Sequential(
        [keras.Input((6,)), _dense(32, "tanh"), _dense(32, "tanh"), _dense(1, None)]
    )
    model.compile(keras.optimizers.RMSprop(3e-3), "mae")
    return model, x, y, {"epochs": 3}


CONFIGS: dict[str, Callable[[], Config]] = {
    f.__name__: f
    for f in (
        mlp_adam,
        noisy_labels,
        brisk_sgd_momentum,
        brisk_adam,
        cnn,
        gru,
        lstm_classifier,
        batchnorm,
        dropout,
        large_finite_loss,
        embedding_text,
        deep_relu_he,
        tanh_regression,
    )
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", action="append", help="run only this configuration")
    args = parser.parse_args()
    names = args.only or list(CONFIGS)
    print(
        f"{'run':20} {'steps':>6} {'first loss':>11} {'last loss':>10} "
        f"{'crit':>4} {'warn':>4} {'info':>4}  codes"
    )
    alarms = warned = 0
    for name in names:
        keras.utils.set_random_seed(0)
        model, x, y, fit = CONFIGS[name]()
        guard = nanguard.Guard(verbose=False, activation_every=25)
        began = time.perf_counter()
        history = model.fit(
            x, y, verbose=0, batch_size=fit.pop("batch_size", 32), callbacks=[guard], **fit
        )
        run = guard.report.runs[0]
        counts = {
            s: sum(w.severity == s for w in run.warnings) for s in ("critical", "warning", "info")
        }
        alarm = counts["critical"] > 0 or counts["warning"] > 1
        alarms += alarm
        warned += counts["critical"] + counts["warning"] > 0
        losses = history.history["loss"]
        codes = (
            ", ".join(
                f"{w.code}({w.severity}{', ' + w.layer if w.layer else ''})" for w in run.warnings
            )
            or "-"
        )
        assert not run.incidents, f"{name} is meant to be healthy: {run.incidents[0]}"
        print(
            f"{name:20} {run.steps:6d} {losses[0]:11.4g} {losses[-1]:10.4g} "
            f"{counts['critical']:4d} {counts['warning']:4d} {counts['info']:4d}  {codes}"
            f"{'  <- false alarm' if alarm else ''} ({time.perf_counter() - began:.1f}s)",
            flush=True,
        )
    print(
        f"\nfalse alarms (a critical, or more than one warning): {alarms} of {len(names)} "
        f"runs ({alarms / len(names):.0%}); runs with any warning: {warned} of {len(names)}"
    )


if __name__ == "__main__":
    main()
