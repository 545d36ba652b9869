"""Tabular regression on standardized inputs with SGD + momentum at a learning rate of 0.5.

User story: everything is scaled properly (inputs and target at unit scale, Glorot init), but the
user copied `SGD(0.5, momentum=0.9)` from a recipe for a different model. The updates overshoot,
the loss climbs geometrically and overflows after a few dozen steps (seed article: learning rate
too high).

Fault: learning rate too high.
Counterfactual checked: `SGD(0.05, momentum=0.9)` (LR/10) trains finite.
"""

EXPECTED = {
    "root_cause": "learning_rate_too_high",
    "layer": None,
    "op": None,
    "dataset_indices": None,
    "step": 19,
}

import keras
import numpy as np

keras.utils.set_random_seed(32)
rng = np.random.default_rng(32)

n = 2048
x = rng.normal(size=(n, 10)).astype("float32")
w = rng.normal(size=(10,))
y = (x @ w / np.sqrt(10) + 0.3 * np.sin(x[:, 0]) + rng.normal(0, 0.1, n)).astype("float32")

model = keras.Sequential(
    [
        keras.Input((10,)),
        keras.layers.Dense(64, activation="tanh", name="hidden_1"),
        keras.layers.Dense(64, activation="tanh", name="hidden_2"),
        keras.layers.Dense(1, name="target"),
    ],
    name="tabular",
)
model.compile(keras.optimizers.SGD(0.5, momentum=0.9), "mse")
history = model.fit(x, y, batch_size=64, epochs=2, verbose=0)
print("final loss:", history.history["loss"][-1])
