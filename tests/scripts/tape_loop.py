"""The second seed article's GradientTape loop, with one overflowed record."""

import keras
import numpy as np
import tensorflow as tf

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
images = rng.random((128, 5, 5, 1), dtype=np.float32)
labels = keras.utils.to_categorical(rng.integers(0, 3, 128), 3)
images[45, 1, 1, 0] = np.inf
train_dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(16)
model = keras.Sequential(
    [keras.Input((5, 5, 1)), keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")]
)
optimizer = keras.optimizers.Adam(learning_rate=0.001)


@tf.function
def train_step(images, labels):
    with tf.GradientTape() as tape:
        predictions = model(images, training=True)
        loss = keras.losses.CategoricalCrossentropy()(labels, predictions)
    gradients = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))  # noqa: B905 (as in the article)
    return loss


for images, labels in train_dataset:
    loss = train_step(images, labels)
    print(f"loss {float(loss):.4f}")
