"""Hand-written `tf.function` training loop with the Keras BCE loss and a tf.data pipeline.

Healthy: the seed article's custom loop, written with a numerically safe loss.
"""

EXPECTED = {"healthy": True}

import keras
import numpy as np
import tensorflow as tf

keras.utils.set_random_seed(109)
rng = np.random.default_rng(109)

n = 1024
y = rng.integers(0, 2, n).astype("float32")[:, None]
x = (rng.normal(size=(n, 6)) + 1.5 * (2 * y - 1)).astype("float32")

model = keras.Sequential(
    [
        keras.Input((6,)),
        keras.layers.Dense(16, activation="relu", name="hidden"),
        keras.layers.Dense(1, name="logit"),
    ],
    name="tape_loop",
)
optimizer = keras.optimizers.Adam(0.01)
loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)
dataset = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(n, seed=2).batch(64)


@tf.function
def train_step(xb: tf.Tensor, yb: tf.Tensor) -> tf.Tensor:
    with tf.GradientTape() as tape:
        loss = loss_fn(yb, model(xb, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=False))
    return loss


loss = None
for _epoch in range(5):
    for xb, yb in dataset:
        loss = train_step(xb, yb)
print("final loss:", float(loss))
