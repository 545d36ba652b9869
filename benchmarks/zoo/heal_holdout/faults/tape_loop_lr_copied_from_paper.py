"""Hand-written GradientTape loop for a concrete-strength regressor; learning rate copied too big.

User story: a materials engineer predicts standardized compressive strength from 8 standardized
mix features (cement, water, slag, age, ...), with their own `tf.function` training step and an
SGD optimizer. They took the learning rate 0.6 from a paper that used a linear model on
normalized data; for this 3-layer MLP it is far too large. The data (clean, unit scale) comes
from a shuffled `tf.data` pipeline and training runs 6 epochs. The loss grows by orders of
magnitude within a few steps, then overflows to inf, and the weights go inf/NaN.

Fault: learning rate too high for the loss surface (CONTRACT: learning_rate_too_high).
Counterfactual checked: the same loop with `SGD(learning_rate=0.01)` trains finite.
"""

EXPECTED = {
    "root_cause": "learning_rate_too_high",
    "layer": None,
    "op": None,
    "dataset_indices": None,
    "step": 6,
}

import keras
import numpy as np
import tensorflow as tf

keras.utils.set_random_seed(3)
rng = np.random.default_rng(3)

n = 1024
x = rng.normal(size=(n, 8)).astype("float32")
strength = 0.7 * x[:, 0] - 0.5 * x[:, 1] + 0.4 * np.log1p(np.abs(x[:, 3])) + 0.3 * x[:, 0] * x[:, 2]
strength = strength + rng.normal(0, 0.1, n)
strength = ((strength - strength.mean()) / strength.std()).astype("float32").reshape(-1, 1)
dataset = tf.data.Dataset.from_tensor_slices((x, strength)).shuffle(n, seed=3).batch(32)

model = keras.Sequential(
    [
        keras.Input((8,)),
        keras.layers.Dense(64, activation="relu", name="dense_1"),
        keras.layers.Dense(64, activation="relu", name="dense_2"),
        keras.layers.Dense(1, name="strength"),
    ],
    name="concrete",
)
optimizer = keras.optimizers.SGD(learning_rate=0.6)
loss_fn = keras.losses.MeanSquaredError()


@tf.function
def train_step(xb, yb):
    with tf.GradientTape() as tape:
        pred = model(xb, training=True)
        loss = loss_fn(yb, pred)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
    return loss


epoch_loss = float("nan")
for epoch in range(6):
    losses = [float(train_step(xb, yb)) for xb, yb in dataset]
    epoch_loss = float(np.mean(losses))
    print(f"epoch {epoch}: loss {epoch_loss:.4f}")
print("final loss:", epoch_loss)
