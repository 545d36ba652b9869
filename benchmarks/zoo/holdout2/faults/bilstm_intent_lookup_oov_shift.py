"""Banking-chat intent classifier: token ids -> Embedding(mask_zero) -> Bidirectional LSTM ->
softmax over five intents. The labels are strings, turned into ids inside the `tf.data` `.map`
with `StringLookup(vocabulary=INTENTS)`; batches of 32 in file order; `steps_per_execution=4`.

Planted fault: StringLookup's default `num_oov_indices=1` reserves id 0 for unknown strings and
shifts the five intents to ids 1..5, while the head has five units. The common intents land on
1..4 (in range, silently shifted); "refund" becomes 5, outside [0, 5). Refund requests are rare
(rows 530, 1102, 1410): sparse categorical cross-entropy raises InvalidArgumentError in the
first batch holding one, step 16 (row 530), inside the execution that runs steps 16-19.

Counterfactual (run, trains finite): `StringLookup(vocabulary=INTENTS, num_oov_indices=0)`.
Measured: with `steps_per_execution=1` steps 0-15 end and step 16 raises; with 4 the last
completed batch is 15 and the error lists label 5 at position 18 of the batch (row 16 * 32 + 18).
"""

EXPECTED = {
    "root_cause": "label_out_of_range",
    "layer": None,
    "op": None,
    "dataset_indices": [530],
    "step": 16,
}

import keras
import numpy as np
import tensorflow as tf

keras.utils.set_random_seed(8)
rng = np.random.default_rng(8)

INTENTS = ["balance", "transfer", "card_lost", "open_account", "refund"]
N, T, VOCAB = 1600, 20, 400
intent = rng.choice(4, size=N)  # the four common intents
intent[[530, 1102, 1410]] = 4  # refund requests are rare in this export
label_text = np.array([INTENTS[i] for i in intent])
tokens = np.zeros((N, T), dtype="int32")
for i in range(N):
    length = rng.integers(5, T + 1)
    words = rng.integers(1, VOCAB, size=length)
    # each intent has its own keyword block
    words[rng.integers(0, length, size=2)] = 1 + 60 * intent[i] + rng.integers(0, 60, size=2)
    tokens[i, :length] = words

label_lookup = keras.layers.StringLookup(vocabulary=INTENTS)


def encode(token_ids, text_label):
    return token_ids, label_lookup(text_label)


ds = tf.data.Dataset.from_tensor_slices((tokens, label_text)).map(encode).batch(32)

model = keras.Sequential(
    [
        keras.Input((T,), dtype="int32"),
        keras.layers.Embedding(VOCAB, 32, mask_zero=True, name="embed"),
        keras.layers.Bidirectional(keras.layers.LSTM(16), name="bilstm"),
        keras.layers.Dense(len(INTENTS), activation="softmax", name="intent"),
    ]
)
model.compile(
    optimizer=keras.optimizers.Adam(2e-3),
    loss="sparse_categorical_crossentropy",
    steps_per_execution=4,
)
history = model.fit(ds, epochs=2, verbose=2)
print("final loss:", history.history["loss"][-1])
