"""ECG snippets standardized one recording at a time; one recording is a flat line.

User story: each 64-sample recording is z-scored on its own, `(x - mean) / std` per row, a
common recipe for signals from different devices. Recording 733 came from a disconnected lead and
is constant, so its std is 0 and the whole row becomes 0/0 = NaN. The data goes through a
shuffled `tf.data` pipeline into a Conv1D + GRU model.

Fault: 0/0 in hand-written standardization, one record (seed article: "normalize the data").
Counterfactual checked: `(x - mean) / (std + 1e-8)` trains finite.
"""

EXPECTED = {
    "root_cause": "input_nonfinite",
    "layer": None,
    "op": None,
    "dataset_indices": [733],
    "step": 6,
}

import keras
import numpy as np
import tensorflow as tf

keras.utils.set_random_seed(2)
rng = np.random.default_rng(2)

n, t = 900, 64
labels = rng.integers(0, 2, n).astype("float32")
phase = rng.uniform(0, 2 * np.pi, (n, 1))
freq = np.where(labels[:, None] > 0, 0.35, 0.2)
raw = 800 + 120 * np.sin(freq * np.arange(t) + phase) + rng.normal(0, 15, (n, t))
raw[733] = 812.0  # lead off: a constant trace
with np.errstate(invalid="ignore", divide="ignore"):
    signals = (raw - raw.mean(axis=1, keepdims=True)) / raw.std(axis=1, keepdims=True)
signals = signals[..., None].astype("float32")

dataset = tf.data.Dataset.from_tensor_slices((signals, labels)).shuffle(n, seed=7).batch(32)

model = keras.Sequential(
    [
        keras.Input((t, 1)),
        keras.layers.Conv1D(8, 5, strides=4, activation="relu", name="conv"),
        keras.layers.GRU(12, name="gru"),
        keras.layers.Dense(1, activation="sigmoid", name="abnormal"),
    ],
    name="ecg_gru",
)
model.compile(keras.optimizers.Adam(3e-3), "binary_crossentropy")
history = model.fit(dataset, epochs=1, verbose=0)
print("final loss:", history.history["loss"][-1])
