"""Hand-written binary cross-entropy in a `tf.function` GradientTape loop.

User story: the user writes the textbook loss `-mean(y*log(p) + (1-y)*log(1-p))` on a sigmoid
output, in their own compiled training step (the seed article's Example 1 loop). The data is
standardized and well separated, so the model grows confident; once a sigmoid output rounds to
exactly 1.0 (or 0.0) in float32, `log(1 - p)` is -inf and `0 * -inf` is NaN.

Fault: the loss computes log(0) (seed article: "numerical instability in loss functions").
Counterfactual checked: `log(clip(p, 1e-7, 1 - 1e-7))` (or `keras.losses.BinaryCrossentropy`)
trains finite at the same learning rate.
"""

EXPECTED = {
    "root_cause": "unstable_loss",
    "layer": None,
    "op": "Log",
    "dataset_indices": None,
    "step": 22,  # first non-finite loss unguarded, TF 2.21 / Keras 3.15 (20 when written)
}

import keras
import numpy as np
import tensorflow as tf

keras.utils.set_random_seed(22)
rng = np.random.default_rng(22)

n = 1024
y = rng.integers(0, 2, n).astype("float32")[:, None]
x = (rng.normal(size=(n, 6)) + 3.0 * (2 * y - 1)).astype("float32")
x = (x - x.mean(axis=0)) / x.std(axis=0)

model = keras.Sequential(
    [
        keras.Input((6,)),
        keras.layers.Dense(16, activation="relu", name="hidden"),
        keras.layers.Dense(1, activation="sigmoid", name="prob"),
    ],
    name="bce_by_hand",
)
optimizer = keras.optimizers.Adam(0.05)
dataset = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(n, seed=1).batch(64)


@tf.function
def train_step(xb: tf.Tensor, yb: tf.Tensor) -> tf.Tensor:
    with tf.GradientTape() as tape:
        p = model(xb, training=True)
        loss = -tf.reduce_mean(yb * tf.math.log(p) + (1 - yb) * tf.math.log(1 - p))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=False))
    return loss


loss = None
for _epoch in range(10):
    for xb, yb in dataset:
        loss = train_step(xb, yb)
print("final loss:", float(loss))
