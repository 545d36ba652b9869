"""GRU forecasting the next value of noisy sine waves, with gradient clipping.

Healthy: a standard recurrent regression.
"""

EXPECTED = {"healthy": True}

import keras
import numpy as np

keras.utils.set_random_seed(106)
rng = np.random.default_rng(106)

n, steps = 768, 24
phase = rng.uniform(0, 2 * np.pi, (n, 1))
freq = rng.uniform(0.2, 0.5, (n, 1))
t = np.arange(steps + 1)
waves = np.sin(freq * t + phase) + rng.normal(0, 0.05, (n, steps + 1))
x = waves[:, :steps, None].astype("float32")
y = waves[:, steps:].astype("float32")

model = keras.Sequential(
    [
        keras.Input((steps, 1)),
        keras.layers.GRU(16, name="gru"),
        keras.layers.Dense(1, name="next"),
    ],
    name="sine_gru",
)
model.compile(keras.optimizers.Adam(1e-2, clipnorm=1.0), "mse")
history = model.fit(x, y, batch_size=32, epochs=2, verbose=0)
print("final loss:", history.history["loss"][-1])
