"""Bag-of-words classifier that L2-normalizes each document by hand; one document is empty.

User story: term counts are normalized inside the model by a custom layer, `x / sqrt(sum(x^2))`,
so long and short documents look alike. Document 640 has no known words: all counts are 0, the
norm is 0 and the layer outputs 0/0 = NaN. Unshuffled `tf.data` pipeline, batch 32.

Fault: x/0 in a layer's forward computation, triggered by one (finite, valid) sample.
Counterfactual checked: `x / (norm + 1e-8)` trains finite.
"""

EXPECTED = {
    "root_cause": "unstable_op",
    "layer": "l2_normalize",
    "op": "RealDiv",
    "dataset_indices": [640],
    "step": 20,
}

import keras
import numpy as np
import tensorflow as tf
from keras import ops

keras.utils.set_random_seed(27)
rng = np.random.default_rng(27)


class L2Normalize(keras.layers.Layer):
    def call(self, x):
        return x / ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True))


n, vocab = 1280, 200
counts = rng.poisson(0.3, (n, vocab)).astype("float32")
counts[counts.sum(axis=1) == 0, 0] = 1.0
counts[640] = 0.0  # no known words
spam = (counts[:, :20].sum(axis=1) > counts[:, 20:40].sum(axis=1)).astype("float32")
dataset = tf.data.Dataset.from_tensor_slices((counts, spam)).batch(32)

model = keras.Sequential(
    [
        keras.Input((vocab,)),
        L2Normalize(name="l2_normalize"),
        keras.layers.Dense(16, activation="relu", name="hidden"),
        keras.layers.Dense(1, activation="sigmoid", name="spam"),
    ],
    name="spam_bow",
)
model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
history = model.fit(dataset, epochs=1, verbose=0)
print("final loss:", history.history["loss"][-1])
