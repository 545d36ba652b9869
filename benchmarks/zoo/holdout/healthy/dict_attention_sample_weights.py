"""Healthy: Functional model with dict inputs, MultiHeadAttention and per-sample weights.

A sequence input goes through self-attention, a categorical id through an Embedding; targets are
unit-scale regression values; 5% of rows carry a sample weight of 0 (unverified labels), the rest
1. Arrays in dicts, `fit` with its default shuffling.
"""

EXPECTED = {"healthy": True}

import keras
import numpy as np

keras.utils.set_random_seed(1203)
rng = np.random.default_rng(1203)

n, t = 1024, 10
seq = rng.normal(size=(n, t, 3)).astype("float32")
cat = rng.integers(0, 12, size=n).astype("int32")
target = (seq[:, :, 0].mean(axis=1) + 0.1 * cat / 12).astype("float32")
weights = np.where(rng.random(n) < 0.05, 0.0, 1.0).astype("float32")

seq_in = keras.Input((t, 3), name="seq")
cat_in = keras.Input((), dtype="int32", name="cat")
h = keras.layers.Dense(16, name="proj")(seq_in)
h = keras.layers.MultiHeadAttention(2, 8, name="attention")(h, h)
h = keras.layers.GlobalAveragePooling1D(name="pool")(h)
c = keras.layers.Embedding(12, 4, name="cat_emb")(cat_in)
h = keras.layers.Concatenate(name="concat")([h, c])
out = keras.layers.Dense(1, name="value")(
    keras.layers.Dense(16, activation="relu", name="hidden")(h)
)
model = keras.Model({"seq": seq_in, "cat": cat_in}, out, name="dict_attention")
model.compile(keras.optimizers.Adam(2e-3), "mse")
history = model.fit(
    {"seq": seq, "cat": cat}, target, sample_weight=weights, batch_size=64, epochs=2, verbose=0
)
print("final loss:", history.history["loss"][-1])
