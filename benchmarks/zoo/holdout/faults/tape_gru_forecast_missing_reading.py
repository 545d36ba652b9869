"""Eager GradientTape loop forecasting the next reading with a GRU; one target is a NaN gap.

User story: windows of 24 hourly river-level readings predict the next hour. The windows were cut
from a logger export with one missing reading, stored as NaN; it ended up only as the target of
window 203 (the inputs around it were interpolated by the export tool, the last column was not).
The user trains with an eager hand-written loop (no `tf.function`), batch 25, unshuffled.
The MSE of that batch is NaN and so is every gradient.

Fault: a NaN in the targets (one window), hand-written eager loop.
Counterfactual checked: dropping windows whose target is NaN trains finite.
"""

EXPECTED = {
    "root_cause": "target_nonfinite",
    "layer": None,
    "op": None,
    "dataset_indices": [203],
    "step": 8,
}

import keras
import numpy as np
import tensorflow as tf

keras.utils.set_random_seed(202)
rng = np.random.default_rng(202)

n, t = 400, 24
phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
steps = np.arange(t + 1)[None, :]
series = (np.sin(phase + steps / 4.0) + 0.1 * rng.normal(size=(n, t + 1))).astype("float32")
windows, targets = series[:, :t, None], series[:, t:].copy()
targets[203, 0] = np.nan  # the logger's gap

model = keras.Sequential(
    [
        keras.Input((t, 1)),
        keras.layers.GRU(16, name="gru"),
        keras.layers.Dense(1, name="next_level"),
    ],
    name="river_forecast",
)
optimizer = keras.optimizers.Adam(3e-3)
loss_fn = keras.losses.MeanSquaredError()

loss = None
for start in range(0, n, 25):
    xb = tf.constant(windows[start : start + 25])
    yb = tf.constant(targets[start : start + 25])
    with tf.GradientTape() as tape:
        loss = loss_fn(yb, model(xb, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=False))
print("final loss:", float(loss))
