"""1D CNN rhythm classifier; a later annotation batch introduced a sixth rhythm class.

User story: ECG snippets (128 samples) are classified into 5 rhythm classes with a Conv1D
Sequential model, `Dense(5)` logits and `SparseCategoricalCrossentropy(from_logits=True)`. A
second annotation round added "paced rhythm" as class 5 for two recordings (rows 777 and 1500);
the output layer was not widened. Arrays, `shuffle=False`, batch 64: on CPU TensorFlow raises
at the batch holding row 777.

Fault: a class label outside [0, num_classes).
Counterfactual checked: `Dense(6)` on the output trains finite.
"""

EXPECTED = {
    "root_cause": "label_out_of_range",
    "layer": None,
    "op": None,
    "dataset_indices": [777],
    "step": 12,
}

import keras
import numpy as np

keras.utils.set_random_seed(303)
rng = np.random.default_rng(303)

n, t = 1600, 128
labels = rng.integers(0, 5, size=n).astype("int32")
time = np.arange(t)[None, :] / t
x = np.sin(2 * np.pi * (labels[:, None] + 1) * 2 * time) + 0.3 * rng.normal(size=(n, t))
x = x[..., None].astype("float32")
labels[[777, 1500]] = 5  # second annotation round: paced rhythm

model = keras.Sequential(
    [
        keras.Input((t, 1)),
        keras.layers.Conv1D(16, 7, activation="relu", name="conv_a"),
        keras.layers.MaxPooling1D(2, name="pool"),
        keras.layers.Conv1D(16, 5, activation="relu", name="conv_b"),
        keras.layers.GlobalAveragePooling1D(name="gap"),
        keras.layers.Dense(5, name="rhythm"),
    ],
    name="ecg_rhythm",
)
model.compile(
    keras.optimizers.Adam(1e-3),
    keras.losses.SparseCategoricalCrossentropy(from_logits=True),
)
history = model.fit(x, labels, batch_size=64, epochs=1, shuffle=False, verbose=0)
print("final loss:", history.history["loss"][-1])
