"""Subclassed relu-RNN trained by a hand-written `tf.function` loop; the gradient norm explodes.

User story: a subclassed model wraps a `SimpleRNN(activation="relu")` that integrates 100-step
sensor sequences (the target is a weighted sum of the last readings); the user's own compiled
training step applies SGD with momentum 0.9 at 0.05, reshuffling each epoch with numpy. For a
few dozen steps the gradient norm is ~1; then it jumps by four orders of magnitude in one step
(the recurrence crosses a cliff), keeps growing for a few steps and overflows.

Fault: exploding gradients through a long recurrence, hand-written loop.
Counterfactual checked: clipping the gradients (`SGD(0.05, momentum=0.9, clipnorm=1.0)`) trains
finite.
"""

EXPECTED = {
    "root_cause": "exploding_gradients",
    "layer": "rnn",
    "op": None,
    "dataset_indices": None,
    "step": 67,
}

import keras
import numpy as np
import tensorflow as tf

keras.utils.set_random_seed(31)
rng = np.random.default_rng(31)


class Integrator(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.rnn = keras.layers.SimpleRNN(32, activation="relu", name="rnn")
        self.head = keras.layers.Dense(1, name="total")

    def call(self, x):
        return self.head(self.rnn(x))


n, steps = 512, 100
x = rng.normal(size=(n, steps, 2)).astype("float32")
y = (x[:, -10:, 0].sum(axis=1, keepdims=True) * 0.3).astype("float32")

model = Integrator(name="integrator")
optimizer = keras.optimizers.SGD(0.05, momentum=0.9)
loss_fn = keras.losses.MeanSquaredError()


@tf.function
def train_step(xb: tf.Tensor, yb: tf.Tensor) -> tf.Tensor:
    with tf.GradientTape() as tape:
        loss = loss_fn(yb, model(xb, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=False))
    return loss


loss = None
for epoch in range(6):
    order = np.random.default_rng(epoch).permutation(n)
    for start in range(0, n, 32):
        idx = order[start : start + 32]
        loss = train_step(x[idx], y[idx])
print("final loss:", float(loss))
