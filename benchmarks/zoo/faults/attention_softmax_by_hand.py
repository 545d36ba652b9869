"""Subclassed text model with a hand-written, sharpened attention softmax that overflows exp.

User story: a custom `SharpAttentionPool` layer scores each token, divides by a temperature of
0.001 to make the attention sharp, and normalizes with `exp(s) / sum(exp(s))` written by hand.
Scores of a few tenths become exponents of several hundred, `exp` overflows float32 to inf, and
inf/inf is NaN. The inputs are token ids (no scaling issue).

Fault: exp overflow in a layer's forward computation (seed article: exp overflow).
Counterfactual checked: `ops.softmax(s / temperature, axis=1)` (max-subtracted) trains finite.
"""

EXPECTED = {
    "root_cause": "unstable_op",
    "layer": "sharp_attention",
    "op": "Exp",
    "dataset_indices": None,
    "step": 0,
}

import keras
import numpy as np
from keras import ops

keras.utils.set_random_seed(24)
rng = np.random.default_rng(24)


class SharpAttentionPool(keras.layers.Layer):
    """Attention pooling over tokens with a low temperature."""

    def __init__(self, temperature=1e-3, **kwargs):
        super().__init__(**kwargs)
        self.temperature = temperature
        self.score = keras.layers.Dense(1, name="score")

    def call(self, h):
        s = self.score(h) / self.temperature  # (batch, tokens, 1)
        w = ops.exp(s) / ops.sum(ops.exp(s), axis=1, keepdims=True)
        return ops.sum(w * h, axis=1)


class ReviewClassifier(keras.Model):
    def __init__(self, vocab, **kwargs):
        super().__init__(**kwargs)
        self.embed = keras.layers.Embedding(vocab, 32, name="embed")
        self.proj = keras.layers.Dense(32, activation="tanh", name="proj")
        self.pool = SharpAttentionPool(name="sharp_attention")
        self.out = keras.layers.Dense(1, activation="sigmoid", name="positive")

    def call(self, tokens):
        return self.out(self.pool(self.proj(self.embed(tokens))))


n, length, vocab = 1024, 20, 800
tokens = rng.integers(1, vocab, (n, length)).astype("int32")
positive = (np.isin(tokens, np.arange(1, 80)).sum(axis=1) > 1).astype("float32")

model = ReviewClassifier(vocab, name="reviews")
model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
history = model.fit(tokens, positive, batch_size=32, epochs=1, verbose=0)
print("final loss:", history.history["loss"][-1])
