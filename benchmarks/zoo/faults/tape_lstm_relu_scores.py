"""LSTM activity classifier whose output layer gives "non-negative scores" with relu, eager loop.

User story: the user wanted non-negative class scores and put `activation="relu"` on the
3-unit output, then trained with `keras.losses.CategoricalCrossentropy()` (probabilities
expected) in a hand-written eager GradientTape loop. Keras normalizes each row by its sum; a row
whose three relu outputs are all 0 is 0/0 = NaN, which happens on the first batch.

Fault: output activation incompatible with the loss (relu into cross-entropy), eager loop, LSTM.
Counterfactual checked: `activation="softmax"` on the output trains finite.
"""

EXPECTED = {
    "root_cause": "output_loss_mismatch",
    "layer": None,
    "op": "RealDiv",
    "dataset_indices": None,
    "step": 0,
}

import keras
import numpy as np
import tensorflow as tf

keras.utils.set_random_seed(21)
rng = np.random.default_rng(21)

n, steps = 640, 16
activity = rng.integers(0, 3, n)
t = np.arange(steps)
x = np.sin(t[None, :] * (0.3 + 0.4 * activity[:, None]) + rng.uniform(0, 6, (n, 1)))
x = (x + 0.2 * rng.normal(size=(n, steps)))[..., None].astype("float32")
y = keras.utils.to_categorical(activity, 3)

model = keras.Sequential(
    [
        keras.Input((steps, 1)),
        keras.layers.LSTM(16, name="lstm"),
        keras.layers.Dense(3, activation="relu", name="scores"),
    ],
    name="activity_lstm",
)
optimizer = keras.optimizers.Adam(1e-3)
loss_fn = keras.losses.CategoricalCrossentropy()

loss = None
for _ in range(2):
    for start in range(0, n, 32):
        with tf.GradientTape() as tape:
            loss = loss_fn(y[start : start + 32], model(x[start : start + 32], training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=False))
print("final loss:", float(loss))
