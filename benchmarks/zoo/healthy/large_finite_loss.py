"""Regression on targets around 1e4 with MSE: losses of ~1e8 at the start, all finite.

Healthy: large loss values are not a fault; Adam's normalized updates keep the run stable while
the output bias climbs toward the target scale.
"""

EXPECTED = {"healthy": True}

import keras
import numpy as np

keras.utils.set_random_seed(103)
rng = np.random.default_rng(103)

n = 2000
x = rng.normal(size=(n, 6)).astype("float32")
y = (12000 + 3000 * x[:, 0] + 1000 * x[:, 1] + rng.normal(0, 200, n)).astype("float32")

model = keras.Sequential(
    [
        keras.Input((6,)),
        keras.layers.Dense(32, activation="relu", name="hidden"),
        keras.layers.Dense(1, name="target"),
    ],
    name="big_targets",
)
model.compile(keras.optimizers.Adam(0.05), "mse")
history = model.fit(x, y, batch_size=32, epochs=2, verbose=0)
print("final loss:", history.history["loss"][-1])
