"""Device-log classifier: windows of 24 event ids -> Embedding, a Lambda that zeroes padded
positions, a hand-written RMSNorm (as in recent LLMs, without epsilon), one Transformer encoder
block (MultiHeadAttention, residuals, LayerNormalization, GELU feed-forward), mean pooling;
`fit(shuffle=True)`.

Planted fault: a device that went offline early leaves a short final window padded with zeros.
Its padded positions are all-zero vectors, so `rms_norm` computes x * rsqrt(mean(x**2)) =
0 * rsqrt(0) = 0 * inf = NaN, and attention spreads the NaN to every position. Rows 388, 901 and
1290 are short; the first batch with one is step 17 (row 388 only).

Counterfactual (run, trains finite): `rsqrt(mean(x**2) + 1e-6)`.
Measured: step 17 in graph mode and in an eager replay; in the replay `rms_norm` is the first
layer with a non-finite output from finite inputs.
"""

EXPECTED = {
    "root_cause": "unstable_op",
    "layer": "rms_norm",
    "op": "Rsqrt",
    "dataset_indices": [388],
    "step": 17,
}

import keras
import numpy as np
import tensorflow as tf

keras.utils.set_random_seed(12)
rng = np.random.default_rng(12)

N, T, VOCAB, CLASSES = 1536, 24, 300, 3
events = rng.integers(1, VOCAB, size=(N, T)).astype("int32")
label = rng.integers(0, CLASSES, size=N).astype("int32")
for i in range(N):
    # each class has a signature event that shows up a few times in the window
    events[i, rng.integers(0, T, size=3)] = 1 + label[i]
# Windows are cut from device logs; a device that went offline early leaves a short final
# window, padded with 0 at the end.
for row, length in [(388, 11), (901, 17), (1290, 7)]:
    events[row, length:] = 0


class RMSNorm(keras.layers.Layer):
    """Root-mean-square normalization over the feature axis (as in recent LLMs)."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="scale")

    def call(self, x):
        return x * tf.math.rsqrt(tf.reduce_mean(tf.square(x), axis=-1, keepdims=True)) * self.scale


tokens = keras.Input((T,), dtype="int32", name="events")
x = keras.layers.Embedding(VOCAB, 32, name="embed")(tokens)
x = keras.layers.Lambda(
    lambda t: t[0] * tf.cast(t[1] > 0, t[0].dtype)[..., None], name="zero_padding"
)([x, tokens])
x = RMSNorm(name="rms_norm")(x)
attn = keras.layers.MultiHeadAttention(num_heads=2, key_dim=16, name="self_attention")(x, x)
x = keras.layers.LayerNormalization(name="norm_1")(keras.layers.Add(name="residual_1")([x, attn]))
ff = keras.layers.Dense(64, activation="gelu", name="ffn_in")(x)
ff = keras.layers.Dense(32, name="ffn_out")(ff)
x = keras.layers.LayerNormalization(name="norm_2")(keras.layers.Add(name="residual_2")([x, ff]))
x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
logits = keras.layers.Dense(CLASSES, name="logits")(x)
model = keras.Model(tokens, logits)
model.compile(
    optimizer=keras.optimizers.AdamW(1e-3),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
)
history = model.fit(events, label, batch_size=32, epochs=2, shuffle=True, verbose=2)
print("final loss:", history.history["loss"][-1])
