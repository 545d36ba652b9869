"""Models the overhead benchmarks share, built with Keras alone (any backend)."""

from __future__ import annotations

import keras
import numpy as np


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


def cnn(batchnorm: bool = False) -> tuple[keras.Model, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.random((4096, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 4096)
    norm = [keras.layers.BatchNormalization()] if batchnorm else []
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(16, 3, activation="relu"),
            *norm,
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    return model, x, y


def resnet() -> tuple[keras.Model, np.ndarray, np.ndarray]:
    """A small residual CNN on CIFAR-sized images: steps of tens of milliseconds on a CPU, the
    scale of real image training, where the guard's fixed per-step cost weighs less."""
    rng = np.random.default_rng(3)
    x = rng.random((2048, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, 2048)
    inputs = keras.Input((32, 32, 3))
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    for filters, stride in ((16, 1), (32, 2), (64, 2)):
        h = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", activation="relu")(h)
        r = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(h)
        r = keras.layers.Conv2D(filters, 3, padding="same")(r)
        h = keras.layers.Activation("relu")(keras.layers.Add()([h, r]))
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(h))
    model.compile("adam", "sparse_categorical_crossentropy")
    return model, x, y
