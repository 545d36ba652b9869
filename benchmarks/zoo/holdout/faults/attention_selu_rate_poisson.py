"""Multi-input attention model of call volume; a `selu` output layer feeds the Poisson loss.

User story: a Functional model reads a 12-step history of call counts (through a small
MultiHeadAttention block) and a day-of-week id (Embedding) and predicts the next minute's call
count (mostly 0) with `loss="poisson"`. The user picked `activation="selu"` for the output
"because it is self-normalizing". selu outputs go down to -1.76; Poisson computes
log(y_pred + 1e-7), which is NaN for any negative prediction, and with this seed about one
prediction in eight is negative from the very first batch. The gradient of log stays finite, so
the weights do not go NaN: the reported loss does (the first epoch's loss is NaN).

Fault: output activation incompatible with the loss (negative rates into Poisson).
Counterfactual checked: `activation="softplus"` on the output trains finite.
"""

EXPECTED = {
    "root_cause": "output_loss_mismatch",
    "layer": None,
    "op": "Log",
    "dataset_indices": None,
    "step": 0,
}

import keras
import numpy as np

keras.utils.set_random_seed(704)
rng = np.random.default_rng(704)

n, t = 1024, 12
history_counts = rng.poisson(0.5, size=(n, t, 1)).astype("float32")
weekday = rng.integers(0, 7, size=n).astype("int32")
calls = rng.poisson(0.05 + history_counts.mean(axis=(1, 2)) * 0.2 + weekday * 0.02)
calls = calls.astype("float32")

hist_in = keras.Input((t, 1), name="history")
day_in = keras.Input((), dtype="int32", name="weekday")
h = keras.layers.Dense(16, name="embed_steps")(hist_in)
h = keras.layers.MultiHeadAttention(2, 8, name="attention")(h, h)
h = keras.layers.GlobalAveragePooling1D(name="pool")(h)
d = keras.layers.Embedding(7, 4, name="day_emb")(day_in)
h = keras.layers.Concatenate(name="concat")([h, d])
h = keras.layers.Dense(16, activation="relu", name="hidden")(h)
out = keras.layers.Dense(1, activation="selu", name="calls")(h)
model = keras.Model([hist_in, day_in], out, name="call_volume")
model.compile(keras.optimizers.Adam(1e-3), "poisson")
history = model.fit([history_counts, weekday], calls, batch_size=64, epochs=1, verbose=0)
print("final loss:", history.history["loss"][-1])
