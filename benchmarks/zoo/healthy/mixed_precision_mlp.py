"""MLP under the `mixed_float16` policy, output layer kept in float32 as the guide advises.

Healthy: the loss scaler skips a few steps at the start while it finds its scale (its own,
expected behaviour); the loss itself is finite throughout.
"""

EXPECTED = {"healthy": True}

import keras
import numpy as np

keras.mixed_precision.set_global_policy("mixed_float16")
keras.utils.set_random_seed(108)
rng = np.random.default_rng(108)

n = 2048
x = rng.normal(size=(n, 16)).astype("float32")
y = np.argmax(x[:, :4] + 0.3 * rng.normal(size=(n, 4)), axis=1)

model = keras.Sequential(
    [
        keras.Input((16,)),
        keras.layers.Dense(64, activation="relu", name="hidden_1"),
        keras.layers.Dense(64, activation="relu", name="hidden_2"),
        keras.layers.Dense(4, activation="softmax", dtype="float32", name="classes"),
    ],
    name="mixed_mlp",
)
model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
history = model.fit(x, y, batch_size=64, epochs=2, verbose=0)
print("final loss:", history.history["loss"][-1])
