"""Embedding + GRU topic classifier; three rows use a category that the model does not have.

User story: the model was built for 4 topics. Annotators later added a fifth topic ("other",
id 4) to three rows (950, 1210, 1600) without anyone widening the output layer. Token ids come
through a shuffled `tf.data` pipeline built from the arrays. On CPU TensorFlow raises at the
first batch holding one of them.

Fault: label outside [0, num_classes) in a few rows, tf.data, Embedding + GRU.
Counterfactual checked: dropping the three rows trains finite.
"""

EXPECTED = {
    "root_cause": "label_out_of_range",
    "layer": None,
    "op": None,
    "dataset_indices": [950],
    "step": 8,
}

import keras
import numpy as np
import tensorflow as tf

keras.utils.set_random_seed(9)
rng = np.random.default_rng(9)

n, length, vocab = 1800, 12, 500
topics = rng.integers(0, 4, n)
tokens = rng.integers(1, vocab, (n, length))
tokens[:, :3] = topics[:, None] * 100 + rng.integers(1, 100, (n, 3))  # topic words
topics[[950, 1210, 1600]] = 4  # the new "other" topic

dataset = (
    tf.data.Dataset.from_tensor_slices((tokens.astype("int32"), topics.astype("int32")))
    .shuffle(n, seed=11)
    .batch(48)
)

model = keras.Sequential(
    [
        keras.Input((length,), dtype="int32"),
        keras.layers.Embedding(vocab, 16, name="embed"),
        keras.layers.GRU(16, name="gru"),
        keras.layers.Dense(4, activation="softmax", name="topic"),
    ],
    name="topic_gru",
)
model.compile("adam", "sparse_categorical_crossentropy")
history = model.fit(dataset, epochs=1, verbose=0)
print("final loss:", history.history["loss"][-1])
