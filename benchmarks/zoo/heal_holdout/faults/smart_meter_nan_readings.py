"""Household energy forecast from smart-meter features, three meter exports with NaN readings.

User story: a utility analyst predicts next-day consumption (standardized kWh) from 12 smart-meter
features (lagged consumption, temperature, tariff flags). Three households' exports had a failed
meter read that the CSV loader turned into NaN in the "yesterday's peak" column (column 4). The
features are otherwise standardized; a small Sequential MLP is trained with Adam on shuffled numpy
arrays for 6 epochs. The first batch holding one of those rows makes the loss NaN, and Adam writes
NaN into every weight.

Fault: NaN in the input features of rows 311, 1207 and 2650 (CONTRACT: input_nonfinite).
Counterfactual checked: dropping those three rows (`np.isfinite(x).all(axis=1)` mask) trains
finite at the same settings.
"""

EXPECTED = {
    "root_cause": "input_nonfinite",
    "layer": None,
    "op": None,
    "dataset_indices": [311, 1207, 2650],
    "step": 13,
}

import keras
import numpy as np

keras.utils.set_random_seed(41)
rng = np.random.default_rng(41)

n = 3200
x = rng.normal(size=(n, 12)).astype("float32")
w = rng.normal(size=12).astype("float32")
y = (0.4 * x @ w + 0.3 * np.tanh(x[:, 0] * x[:, 4]) + rng.normal(0, 0.1, n)).astype("float32")
y = (y - y.mean()) / y.std()
x[[311, 1207, 2650], 4] = np.nan  # failed meter reads in the export

model = keras.Sequential(
    [
        keras.Input((12,)),
        keras.layers.Dense(64, activation="gelu", name="dense_1"),
        keras.layers.Dense(32, activation="gelu", name="dense_2"),
        keras.layers.Dense(1, name="kwh"),
    ],
    name="meter_forecast",
)
model.compile(keras.optimizers.Adam(1e-3), "mse")
history = model.fit(x, y, batch_size=64, epochs=6, verbose=0)
print("final loss:", history.history["loss"][-1])
