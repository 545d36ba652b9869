"""Standardized tabular regression with a brisk but stable `SGD(0.1, momentum=0.9)`.

Healthy: the loss jumps around in the first steps and then settles; it never leaves the
finite range.
"""

EXPECTED = {"healthy": True}

import keras
import numpy as np

keras.utils.set_random_seed(102)
rng = np.random.default_rng(102)

n = 2048
x = rng.normal(size=(n, 10)).astype("float32")
y = (x[:, 0] - 0.5 * x[:, 1] + 0.2 * x[:, 2] * x[:, 3] + rng.normal(0, 0.1, n)).astype("float32")

model = keras.Sequential(
    [
        keras.Input((10,)),
        keras.layers.Dense(32, activation="tanh", name="hidden"),
        keras.layers.Dense(1, name="target"),
    ],
    name="brisk_sgd",
)
model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
history = model.fit(x, y, batch_size=64, epochs=3, verbose=0)
print("final loss:", history.history["loss"][-1])
