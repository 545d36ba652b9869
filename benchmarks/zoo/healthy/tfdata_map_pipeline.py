"""`tf.data` pipeline that standardizes in a `map`, with shuffle, batch and prefetch.

Healthy: the statistics are computed with an epsilon, so a near-constant column is harmless.
"""

EXPECTED = {"healthy": True}

import keras
import numpy as np
import tensorflow as tf

keras.utils.set_random_seed(110)
rng = np.random.default_rng(110)

n = 2048
raw = rng.normal(50.0, 10.0, (n, 5)).astype("float32")
raw[:, 4] = 7.0  # a constant column
y = ((raw[:, 0] - 50) / 10 + 0.5 * (raw[:, 1] - 50) / 10 > 0).astype("float32")
mean, std = raw.mean(axis=0), raw.std(axis=0)

dataset = (
    tf.data.Dataset.from_tensor_slices((raw, y))
    .shuffle(n, seed=4)
    .map(lambda a, b: ((a - mean) / (std + 1e-6), b))
    .batch(64)
    .prefetch(2)
)

model = keras.Sequential(
    [
        keras.Input((5,)),
        keras.layers.Dense(16, activation="relu", name="hidden"),
        keras.layers.Dense(1, activation="sigmoid", name="label"),
    ],
    name="tfdata_mlp",
)
model.compile(keras.optimizers.Adam(3e-3), "binary_crossentropy")
history = model.fit(dataset, epochs=2, verbose=0)
print("final loss:", history.history["loss"][-1])
