"""Review sentiment with a small Transformer encoder: Embedding(mask_zero=True) propagates the
padding mask into MultiHeadAttention and the masked mean pooling; 60 reviews are one word long;
5% of rows (spam) get `sample_weight` 0; AdamW at a brisk 3e-3 with `global_clipnorm`.

Healthy: Keras masks attention with a large finite negative, no row is fully padded, and the
zero sample weights multiply finite losses; training is finite and converges.
"""

EXPECTED = {"healthy": True}

import keras
import numpy as np

keras.utils.set_random_seed(52)
rng = np.random.default_rng(52)

N, T, VOCAB = 1600, 32, 500
lengths = rng.integers(1, T + 1, size=N)
lengths[rng.choice(N, 60, replace=False)] = 1  # one-word reviews ("great", "meh")
sentiment = rng.integers(0, 2, size=N).astype("int32")
tokens = np.zeros((N, T), dtype="int32")
for i in range(N):
    words = rng.integers(3, VOCAB, size=lengths[i])
    words[rng.integers(0, lengths[i])] = 1 + sentiment[i]  # a telling word
    tokens[i, : lengths[i]] = words
# reviews flagged as spam keep their row but get zero weight
weights = np.where(rng.random(N) < 0.05, 0.0, 1.0).astype("float32")

inputs = keras.Input((T,), dtype="int32", name="tokens")
x = keras.layers.Embedding(VOCAB, 32, mask_zero=True, name="embed")(inputs)
attn = keras.layers.MultiHeadAttention(num_heads=4, key_dim=8, name="self_attention")(x, x)
x = keras.layers.LayerNormalization(name="norm_1")(keras.layers.Add(name="residual_1")([x, attn]))
ff = keras.layers.Dense(64, activation="gelu", name="ffn_in")(x)
ff = keras.layers.Dense(32, name="ffn_out")(ff)
x = keras.layers.LayerNormalization(name="norm_2")(keras.layers.Add(name="residual_2")([x, ff]))
x = keras.layers.GlobalAveragePooling1D(name="masked_mean")(x)
logits = keras.layers.Dense(2, name="logits")(x)
model = keras.Model(inputs, logits)
model.compile(
    optimizer=keras.optimizers.AdamW(3e-3, global_clipnorm=1.0),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
)
history = model.fit(
    tokens, sentiment, sample_weight=weights, batch_size=32, epochs=3, shuffle=True, verbose=2
)
print("final loss:", history.history["loss"][-1])
