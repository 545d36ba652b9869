"""A plain Keras script: a custom layer takes the log of |x| + eps, and one record is all zeros."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

SHIFT = 0.0


class LogAbs(keras.layers.Layer):
    def __init__(self, eps: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.eps = eps

    def call(self, x):
        return ops.log(ops.abs(x) + self.eps + SHIFT)

    def get_config(self):
        return {**super().get_config(), "eps": self.eps}


def halved_mse(y_true, y_pred):
    return 0.5 * ops.mean(ops.square(y_true - y_pred), axis=-1)


keras.utils.set_random_seed(0)
x = np.random.default_rng(0).uniform(0.5, 1.5, size=(128, 3)).astype("float32")
y = x.sum(axis=1, keepdims=True)
x[40] = 0.0
model = keras.Sequential([keras.Input((3,)), LogAbs(name="log_abs"), keras.layers.Dense(1)])
model.compile(keras.optimizers.SGD(0.01), halved_mse)
model.fit(x, y, batch_size=16, shuffle=False, verbose=0)
