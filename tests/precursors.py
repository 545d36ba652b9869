"""Training scenarios with a known precursor of a NaN (or of a run that silently stops learning).

Plain Keras on synthetic data, fixed seeds; each builder returns a fresh compiled model and its
``fit`` arguments (the ``Case`` of :mod:`faults`).
"""

from __future__ import annotations

import keras
import numpy as np
from faults import Case


def exploding_relu_rnn() -> Case:
    """A relu RNN asked for outputs that grow with the sequence: its gradients creep up for
    about a hundred steps, then climb steeply and overflow."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(512, 60, 3)).astype("float32")
    y = (x[:, :, 0].sum(axis=1, keepdims=True) * 3).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((60, 3)),
            keras.layers.SimpleRNN(
                16, activation="relu", recurrent_initializer=keras.initializers.Orthogonal()
            ),
            keras.layers.Dense(1),
        ]
    )
    model.compile(keras.optimizers.SGD(4e-4), "mse")
    return Case(model, x, y, {"batch_size": 32, "shuffle": False, "epochs": 10})


def learning_rate_far_too_high() -> Case:
    """Linear regression with SGD at 1.2, above the 2/curvature limit: every step overshoots
    and the loss grows geometrically for about a hundred steps before it overflows."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4096, 4)).astype("float32")
    y = (x @ rng.normal(size=(4, 1)) + rng.normal(scale=0.5, size=(4096, 1))).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(1.2), "mse")
    return Case(model, x, y, {"batch_size": 128, "shuffle": False, "epochs": 10})


def unscaled_inputs_kill_relus() -> Case:
    """Raw inputs in [0, 1000]: Adam's first steps push the ReLUs negative for every sample;
    the loss stays finite (the model outputs a constant) and never goes NaN."""
    rng = np.random.default_rng(7)
    x = rng.uniform(0, 1000, size=(1024, 8)).astype("float32")
    y = rng.normal(size=(1024, 1)).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(1),
        ]
    )
    model.compile(keras.optimizers.Adam(0.1), "mse")
    return Case(model, x, y, {"batch_size": 32, "shuffle": False, "epochs": 2})


def deep_sigmoid_stack() -> Case:
    """Ten sigmoid layers: each multiplies the backward signal by at most 0.25."""
    rng = np.random.default_rng(8)
    x = rng.normal(size=(512, 16)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    model = keras.Sequential(
        [keras.Input((16,))]
        + [keras.layers.Dense(32, activation="sigmoid") for _ in range(10)]
        + [keras.layers.Dense(1, activation="sigmoid")]
    )
    model.compile(keras.optimizers.SGD(0.1), "binary_crossentropy")
    return Case(model, x, y, {"batch_size": 32, "shuffle": False, "epochs": 2})
