"""Healthy: `mixed_float16` GRU forecaster with a float32 output layer, eager GradientTape loop.

The user follows the mixed-precision guide: float32 output layer, `LossScaleOptimizer` in the
hand-written eager loop (scaled loss, unscaled gradients). Inputs and targets are unit scale.
"""

EXPECTED = {"healthy": True}

import keras
import numpy as np
import tensorflow as tf

keras.mixed_precision.set_global_policy("mixed_float16")
keras.utils.set_random_seed(1204)
rng = np.random.default_rng(1204)

n, t = 320, 20
phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
series = np.sin(phase + np.arange(t + 1)[None, :] / 3.0) + 0.05 * rng.normal(size=(n, t + 1))
x, y = series[:, :t, None].astype("float32"), series[:, t:].astype("float32")

model = keras.Sequential(
    [
        keras.Input((t, 1)),
        keras.layers.GRU(16, name="gru"),
        keras.layers.Dense(1, dtype="float32", name="next"),
    ],
    name="fp16_forecast",
)
optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(3e-3))
loss_fn = keras.losses.MeanSquaredError()
loss = None
for start in range(0, n, 32):
    xb, yb = tf.constant(x[start : start + 32]), tf.constant(y[start : start + 32])
    with tf.GradientTape() as tape:
        loss = loss_fn(yb, model(xb, training=True))
        scaled = optimizer.scale_loss(loss)
    grads = tape.gradient(scaled, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=False))
print("final loss:", float(loss))
