"""Bag-of-embeddings sentiment classifier with padding (mask_zero) and a validation split.

Healthy: Embedding + GlobalAveragePooling1D, the classic fast text model.
"""

EXPECTED = {"healthy": True}

import keras
import numpy as np

keras.utils.set_random_seed(107)
rng = np.random.default_rng(107)

n, length, vocab = 2000, 20, 1000
lengths = rng.integers(4, length + 1, n)
tokens = rng.integers(1, vocab, (n, length))
tokens[np.arange(length)[None, :] >= lengths[:, None]] = 0
label = ((np.isin(tokens, np.arange(1, 100)).sum(axis=1)) > 1).astype("float32")

model = keras.Sequential(
    [
        keras.Input((length,), dtype="int32"),
        keras.layers.Embedding(vocab, 16, mask_zero=True, name="embed"),
        keras.layers.GlobalAveragePooling1D(name="pool"),
        keras.layers.Dense(16, activation="relu", name="hidden"),
        keras.layers.Dense(1, activation="sigmoid", name="positive"),
    ],
    name="fasttext",
)
model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
history = model.fit(
    tokens.astype("int32"), label, batch_size=32, epochs=2, validation_split=0.1, verbose=0
)
print("final loss:", history.history["loss"][-1])
