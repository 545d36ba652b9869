"""Lab-assay regression with missing results: three assay targets per sample, 35% of them NaN
(and 40 samples with no result at all), trained in a `tf.function` `GradientTape` loop over a
shuffled `tf.data` pipeline with batches of 16, so some batches hold very few observed targets.

Healthy: the masked MSE replaces the NaN targets with `tf.where` before any arithmetic touches
them, zeroes the unobserved squared errors with a second `where`, and divides by
`maximum(count, 1)`. The data holds NaN targets but no loss, gradient or weight is ever
non-finite.
"""

EXPECTED = {"healthy": True}

import keras
import numpy as np
import tensorflow as tf

keras.utils.set_random_seed(50)
rng = np.random.default_rng(50)

N, D, K = 2000, 10, 3  # three lab assays per patient sample, often not all ordered
features = rng.normal(size=(N, D)).astype("float32")
w = rng.normal(size=(D, K)) / np.sqrt(D)
assays = (features @ w + 0.2 * rng.normal(size=(N, K))).astype("float32")
missing = rng.random((N, K)) < 0.35
missing[rng.choice(N, 40, replace=False)] = True  # some samples have no assay result at all
assays[missing] = np.nan

model = keras.Sequential(
    [
        keras.Input((D,)),
        keras.layers.Dense(64, activation="relu", name="hidden_1"),
        keras.layers.Dense(64, activation="relu", name="hidden_2"),
        keras.layers.Dense(K, name="assays"),
    ]
)
optimizer = keras.optimizers.Adam(3e-3)


def masked_mse(y, pred):
    observed = tf.math.is_finite(y)
    y_safe = tf.where(observed, y, 0.0)  # replace before any arithmetic touches the NaN
    sq = tf.where(observed, tf.square(pred - y_safe), 0.0)
    count = tf.reduce_sum(tf.cast(observed, tf.float32))
    return tf.reduce_sum(sq) / tf.maximum(count, 1.0)


@tf.function
def train_step(x, y):
    with tf.GradientTape() as tape:
        loss = masked_mse(y, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
    return loss


ds = tf.data.Dataset.from_tensor_slices((features, assays)).shuffle(N, seed=1).batch(16)
loss = None
for epoch in range(4):
    for x, y in ds:
        loss = train_step(x, y)
    print(f"epoch {epoch}: loss {float(loss):.4f}")
print("final loss:", float(loss))
