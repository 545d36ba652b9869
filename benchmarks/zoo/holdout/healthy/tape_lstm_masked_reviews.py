"""Healthy: padded review texts, Embedding(mask_zero=True) + LSTM, hand-written `tf.function` loop.

Sequences of token ids are zero-padded to 40; roughly one review in ten is very short (3 tokens).
Nothing here should raise an alarm: masking is handled by Keras, the loss is the library's
from-logits cross-entropy, the learning rate is ordinary.
"""

EXPECTED = {"healthy": True}

import keras
import numpy as np
import tensorflow as tf

keras.utils.set_random_seed(1201)
rng = np.random.default_rng(1201)

n, t, vocab = 640, 40, 500
lengths = np.where(rng.random(n) < 0.1, 3, rng.integers(8, t, size=n))
tokens = np.zeros((n, t), dtype="int32")
for i, length in enumerate(lengths):
    tokens[i, :length] = rng.integers(1, vocab, size=length)
labels = (tokens[:, :3].sum(axis=1) % 2).astype("int32")

model = keras.Sequential(
    [
        keras.Input((t,), dtype="int32"),
        keras.layers.Embedding(vocab, 16, mask_zero=True, name="emb"),
        keras.layers.LSTM(16, name="lstm"),
        keras.layers.Dense(2, name="logits"),
    ],
    name="reviews",
)
optimizer = keras.optimizers.Adam(2e-3)
loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@tf.function
def train_step(xb, yb):
    with tf.GradientTape() as tape:
        loss = loss_fn(yb, model(xb, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=False))
    return loss


dataset = tf.data.Dataset.from_tensor_slices((tokens, labels)).shuffle(n, seed=1201).batch(32)
loss = None
for _ in range(2):
    for xb, yb in dataset:
        loss = train_step(xb, yb)
print("final loss:", float(loss))
