"""Nested residual CNN block (a sub-model) with a Huber loss and label-smoothed outputs.

Healthy: a Functional model that contains another model, a residual add and the Huber loss.
"""

EXPECTED = {"healthy": True}

import keras
import numpy as np

keras.utils.set_random_seed(113)
rng = np.random.default_rng(113)

n = 768
images = rng.random((n, 10, 10, 2)).astype("float32")
target = images[:, :5, :, 0].mean(axis=(1, 2)) - images[:, 5:, :, 1].mean(axis=(1, 2))
target = target.astype("float32")

block_in = keras.Input((10, 10, 8))
block_h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="block_conv")(block_in)
block = keras.Model(block_in, keras.layers.Add(name="residual")([block_in, block_h]), name="block")

inputs = keras.Input((10, 10, 2))
h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inputs)
h = block(h)
h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
model = keras.Model(inputs, keras.layers.Dense(1, name="out")(h), name="residual_cnn")
model.compile(keras.optimizers.Adam(3e-3), keras.losses.Huber())
history = model.fit(images, target, batch_size=32, epochs=2, verbose=0)
print("final loss:", history.history["loss"][-1])
