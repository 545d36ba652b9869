"""Fine-grained texture classifier with bilinear (second-order) pooling: ReLU Conv2D features,
the channel co-occurrence (gram) matrix averaged over positions, an element-wise square root,
UnitNormalization, Dense. Eager `GradientTape` loop over a shuffled `tf.data` dataset. The user
dropped the usual signed square root because post-ReLU co-occurrences are never negative.

Planted fault: two channels that never fire at the same position have a co-occurrence of exactly
0 (1553 of the 8192 entries in the first batch). sqrt(0) = 0 is fine forward, but the derivative
of sqrt at 0 is inf: the gradients of both conv layers are NaN at step 0 and the weights NaN after
it. The loss of step 0 is finite.

Counterfactual (run, trains finite): `tf.sqrt(g + 1e-8)`.
Measured: step 0 in the script's eager loop; every layer's forward output is finite, the gradient
reaching `sqrt_norm`'s output is finite and the one it passes back to `bilinear` is not.
"""

EXPECTED = {
    "root_cause": "unstable_gradient",
    "layer": "sqrt_norm",
    "op": "Sqrt",
    "dataset_indices": None,
    "step": 0,
}

import keras
import numpy as np
import tensorflow as tf

keras.utils.set_random_seed(26)
rng = np.random.default_rng(26)

N, S, CLASSES = 1024, 28, 4
species = rng.integers(0, CLASSES, size=N).astype("int32")
yy, xx = np.mgrid[0:S, 0:S] / S
images = rng.normal(0.0, 0.05, size=(N, S, S, 1)).astype("float32")
for i in range(N):
    # fine-grained texture classes: stripes at four orientations/frequencies
    angle = species[i] * np.pi / 4 + rng.normal(0, 0.1)
    freq = 6 + 2 * (species[i] % 2)
    phase = rng.uniform(0, 2 * np.pi)
    images[i, :, :, 0] += np.sin(
        2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)) + phase
    )


def bilinear_pool(f):
    # second-order pooling: channel co-occurrence averaged over positions
    b = tf.shape(f)[0]
    f = tf.reshape(f, (b, -1, f.shape[-1]))
    gram = tf.matmul(f, f, transpose_a=True) / tf.cast(tf.shape(f)[1], f.dtype)
    return tf.reshape(gram, (b, f.shape[-1] * f.shape[-1]))


model = keras.Sequential(
    [
        keras.Input((S, S, 1)),
        keras.layers.Conv2D(16, 3, activation="relu", name="conv_1"),
        keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv_2"),
        keras.layers.Lambda(bilinear_pool, name="bilinear"),
        # square-root + L2 normalization of bilinear CNNs; the features are post-ReLU, so the
        # co-occurrences are never negative and the usual sign() can be dropped
        keras.layers.Lambda(tf.sqrt, name="sqrt_norm"),
        keras.layers.UnitNormalization(name="l2"),
        keras.layers.Dense(CLASSES, name="species_logits"),
    ]
)
optimizer = keras.optimizers.Adam(1e-3)
xent = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
ds = tf.data.Dataset.from_tensor_slices((images, species)).shuffle(N, seed=4).batch(32)


def train_step(x, y):
    with tf.GradientTape() as tape:
        loss = xent(y, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
    return loss


loss = None
for epoch in range(3):
    for x, y in ds:
        loss = train_step(x, y)
    print(f"epoch {epoch}: loss {float(loss):.4f}")
print("final loss:", float(loss))
