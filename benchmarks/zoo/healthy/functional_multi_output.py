"""Functional model with two inputs and two outputs (regression + classification), dict data.

Healthy: named inputs and outputs, per-output losses and loss weights, shuffled `fit`.
"""

EXPECTED = {"healthy": True}

import keras
import numpy as np

keras.utils.set_random_seed(112)
rng = np.random.default_rng(112)

n = 2000
num = rng.normal(size=(n, 6)).astype("float32")
cat = rng.integers(0, 10, n)
cat_1h = np.eye(10, dtype="float32")[cat]
value = (num[:, 0] + 0.3 * (cat % 3) + rng.normal(0, 0.1, n)).astype("float32")
kind = ((num[:, 1] > 0) & (cat < 5)).astype("float32")

num_in = keras.Input((6,), name="numeric")
cat_in = keras.Input((10,), name="category")
h = keras.layers.Concatenate(name="merge")(
    [keras.layers.Dense(16, activation="relu", name="num_dense")(num_in), cat_in]
)
h = keras.layers.Dense(32, activation="relu", name="trunk")(h)
model = keras.Model(
    {"numeric": num_in, "category": cat_in},
    {
        "value": keras.layers.Dense(1, name="value")(h),
        "kind": keras.layers.Dense(1, activation="sigmoid", name="kind")(h),
    },
    name="two_heads",
)
model.compile(
    "adam",
    loss={"value": "mse", "kind": "binary_crossentropy"},
    loss_weights={"value": 1.0, "kind": 0.5},
)
history = model.fit(
    {"numeric": num, "category": cat_1h},
    {"value": value, "kind": kind},
    batch_size=32,
    epochs=2,
    verbose=0,
)
print("final loss:", history.history["loss"][-1])
