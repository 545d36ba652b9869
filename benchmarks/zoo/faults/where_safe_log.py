"""Custom "safe log" layer built with `where`; its gradient is NaN through the untaken branch.

User story: a Functional model feeds a relu layer's output both as is and through a "safe log"
(`ops.where(h > 0, ops.log(h), 0.0)`, written to avoid log(0)) into the head. The forward pass
is finite, but the gradient of `where` sends 0 into the untaken `log` branch, whose derivative
at h = 0 is inf: 0 * inf = NaN (seed: the `where` trick). Relu outputs are exactly 0 for many
units, so the first step's gradients are NaN (and, from step 1, the relu layer's weights).

Fault: finite forward, non-finite backward pass through the untaken `where` branch.
Counterfactual checked: `ops.log(ops.where(h > 0, h, 1.0))` (the safe double-where) trains finite.
"""

EXPECTED = {
    "root_cause": "unstable_gradient",
    "layer": "safe_log",
    "op": "Log",
    "dataset_indices": None,
    "step": 0,
}

import keras
import numpy as np
from keras import ops

keras.utils.set_random_seed(29)
rng = np.random.default_rng(29)


class SafeLog(keras.layers.Layer):
    def call(self, h):
        return ops.where(h > 0, ops.log(h), 0.0)


n = 1024
x = rng.normal(size=(n, 8)).astype("float32")
y = (np.log1p(np.abs(x[:, 0] * x[:, 1])) + 0.1 * rng.normal(size=n)).astype("float32")

inputs = keras.Input((8,), name="features")
hidden = keras.layers.Dense(32, activation="relu", name="hidden")(inputs)
logs = SafeLog(name="safe_log")(hidden)
both = keras.layers.Concatenate(name="raw_and_log")([hidden, logs])
model = keras.Model(inputs, keras.layers.Dense(1, name="out")(both), name="log_features")
model.compile(keras.optimizers.Adam(1e-3), "mse")
history = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
print("final loss:", history.history["loss"][-1])
