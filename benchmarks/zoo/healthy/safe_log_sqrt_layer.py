"""Custom layer with log and sqrt written safely (epsilon, safe double-where), relu before it.

Healthy: the same ingredients as the zoo's `where_safe_log` and `siamese_sqrt_distance`
faults, done right: `log(where(h > 0, h, 1))` and `sqrt(x + eps)`.
"""

EXPECTED = {"healthy": True}

import keras
import numpy as np
from keras import ops

keras.utils.set_random_seed(111)
rng = np.random.default_rng(111)


class LogNormFeatures(keras.layers.Layer):
    def call(self, h):
        safe = ops.where(h > 0, h, 1.0)
        logs = ops.where(h > 0, ops.log(safe), 0.0)
        norm = ops.sqrt(ops.sum(ops.square(h), axis=-1, keepdims=True) + 1e-12)
        return ops.concatenate([logs, norm], axis=-1)


n = 1024
x = rng.normal(size=(n, 8)).astype("float32")
x[::50] = 0.0  # some all-zero rows: the norm is 0 there
y = (np.log1p(np.abs(x[:, 0] * x[:, 1])) + 0.1 * rng.normal(size=n)).astype("float32")

model = keras.Sequential(
    [
        keras.Input((8,)),
        keras.layers.Dense(32, activation="relu", name="hidden"),
        LogNormFeatures(name="log_norm"),
        keras.layers.Dense(1, name="out"),
    ],
    name="safe_features",
)
model.compile(keras.optimizers.Adam(1e-3), "mse")
history = model.fit(x, y, batch_size=32, epochs=2, verbose=0)
print("final loss:", history.history["loss"][-1])
