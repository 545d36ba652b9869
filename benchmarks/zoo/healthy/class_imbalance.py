"""Fraud classifier with 1% positives and class weights.

Healthy: most batches hold no positive at all; the weighted binary cross-entropy stays finite.
"""

EXPECTED = {"healthy": True}

import keras
import numpy as np

keras.utils.set_random_seed(104)
rng = np.random.default_rng(104)

n = 4000
x = rng.normal(size=(n, 12)).astype("float32")
y = (rng.random(n) < 0.01).astype("float32")
x[y > 0, :3] += 2.0

model = keras.Sequential(
    [
        keras.Input((12,)),
        keras.layers.Dense(32, activation="relu", name="hidden"),
        keras.layers.Dense(1, activation="sigmoid", name="fraud"),
    ],
    name="fraud",
)
model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
history = model.fit(x, y, batch_size=64, epochs=2, class_weight={0: 1.0, 1: 50.0}, verbose=0)
print("final loss:", history.history["loss"][-1])
