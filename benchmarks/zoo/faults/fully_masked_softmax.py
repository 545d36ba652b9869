"""Masked attention over review tokens; one review is empty after cleaning, so all is masked.

User story: padding tokens (id 0) are masked by setting their scores to -inf before
`ops.softmax`, the usual recipe. Review 1877 became empty after HTML stripping: all its tokens are
padding, every score is -inf, and softmax over all -inf is NaN (seed: fully masked softmax).
Functional model with two inputs (tokens, mask), `fit` shuffles.

Fault: softmax over a fully masked row in a layer's forward pass.
Counterfactual checked: dropping review 1877 (or masking with -1e9 instead of -inf) trains
finite.
"""

EXPECTED = {
    "root_cause": "unstable_op",
    "layer": "masked_attention",
    "op": "Softmax",
    "dataset_indices": [1877],
    "step": 21,
}

import keras
import numpy as np
from keras import ops

keras.utils.set_random_seed(25)
rng = np.random.default_rng(25)


class MaskedAttentionPool(keras.layers.Layer):
    """Softmax attention over tokens, padding masked with -inf."""

    def build(self, input_shape):
        self.query = self.add_weight(shape=(input_shape[0][-1],), name="query")

    def call(self, inputs):
        h, mask = inputs
        scores = ops.sum(h * self.query, axis=-1)
        scores = ops.where(mask > 0, scores, -np.inf)
        weights = ops.softmax(scores, axis=-1)
        return ops.sum(weights[..., None] * h, axis=1)


n, length, vocab = 2000, 16, 600
lengths = rng.integers(3, length + 1, n)
lengths[1877] = 0  # empty after cleaning
tokens = rng.integers(1, vocab, (n, length))
tokens[np.arange(length)[None, :] >= lengths[:, None]] = 0
mask = (tokens > 0).astype("float32")
label = (np.isin(tokens, np.arange(1, 60)).sum(axis=1) > 0).astype("float32")

tok_in = keras.Input((length,), dtype="int32", name="tokens")
mask_in = keras.Input((length,), name="mask")
h = keras.layers.Embedding(vocab, 16, name="embed")(tok_in)
pooled = MaskedAttentionPool(name="masked_attention")([h, mask_in])
out = keras.layers.Dense(1, activation="sigmoid", name="label")(pooled)
model = keras.Model([tok_in, mask_in], out, name="masked_reviews")
model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
history = model.fit([tokens.astype("int32"), mask], label, batch_size=64, epochs=1, verbose=0)
print("final loss:", history.history["loss"][-1])
