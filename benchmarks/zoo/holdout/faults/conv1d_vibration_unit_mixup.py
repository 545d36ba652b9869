"""Vibration-to-wear regression with a Conv1D encoder; one recording was saved in the wrong unit.

User story: 64-sample accelerometer clips (in g, unit scale) predict bearing wear. One recording
(row 905) came from a different logger that writes micro-g as raw float, so its values are ~1e20
times larger than the rest (the logger's fixed-point scale was applied twice). The other 2047
recordings are fine. Sequential Conv1D model, MSE, arrays, `shuffle=False`, batch 64: the batch
holding row 905 produces a squared error that overflows float32.

Fault: one extreme sample drives the blow-up (outlier, not missing data, not unit-scale issue of
the whole column).
Counterfactual checked: dropping row 905 trains finite.
"""

EXPECTED = {
    "root_cause": "input_outlier",
    "layer": None,
    "op": None,
    "dataset_indices": [905],
    "step": 14,
}

import keras
import numpy as np

keras.utils.set_random_seed(505)
rng = np.random.default_rng(505)

n, t = 2048, 64
wear = rng.uniform(0, 1, size=n).astype("float32")
clips = rng.normal(size=(n, t, 1)) * (0.5 + wear[:, None, None])
clips = clips.astype("float32")
clips[905] *= 3e20  # scale applied twice by the other logger

model = keras.Sequential(
    [
        keras.Input((t, 1)),
        keras.layers.Conv1D(8, 5, activation="relu", name="conv"),
        keras.layers.GlobalAveragePooling1D(name="gap"),
        keras.layers.Dense(16, activation="relu", name="hidden"),
        keras.layers.Dense(1, name="wear"),
    ],
    name="bearing_wear",
)
model.compile(keras.optimizers.Adam(1e-3), "mse")
history = model.fit(clips, wear, batch_size=64, epochs=1, shuffle=False, verbose=0)
print("final loss:", history.history["loss"][-1])
