"""A healthy fit that draws one pre-flight warning: Adam at 0.05, above its usual range."""

import keras
import numpy as np

keras.utils.set_random_seed(0)
x = np.random.default_rng(0).normal(size=(256, 4)).astype("float32")
y = x @ np.array([[1.0], [-2.0], [0.5], [0.0]], dtype="float32")
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)], name="warned")
model.compile(keras.optimizers.Adam(0.05), "mse")
history = model.fit(x, y, batch_size=32, epochs=2, verbose=0)
print("finite", bool(np.isfinite(history.history["loss"][-1])))
