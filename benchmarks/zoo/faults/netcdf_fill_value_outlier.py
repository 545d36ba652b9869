"""Weather-station regression where two missing readings carry the NetCDF fill value 9.97e36.

User story: the features come already standardized from a feature store, but missing
temperature readings were never masked: they hold the NetCDF `_FillValue` 9.96921e36, a finite
number. Hours 2040 and 2041 are such readings. Forward through the net they stay finite, but the
squared error overflows float32 at their batch. Unshuffled (time order), batch 64.

Fault: two finite but extreme input records among unit-scale data.
Counterfactual checked: dropping rows 2040-2041 trains finite.
"""

EXPECTED = {
    "root_cause": "input_outlier",
    "layer": None,
    "op": None,
    "dataset_indices": [2040, 2041],
    "step": 31,
}

import keras
import numpy as np

keras.utils.set_random_seed(14)
rng = np.random.default_rng(14)

n = 3200
x = rng.normal(size=(n, 8)).astype("float32")
load = 0.6 * x[:, 0] - 0.4 * x[:, 1] + 0.2 * x[:, 2] ** 2 + rng.normal(0, 0.1, n)
load = load.astype("float32")
x[[2040, 2041], 0] = 9.96921e36  # NetCDF _FillValue left in the temperature column

model = keras.Sequential(
    [
        keras.Input((8,)),
        keras.layers.Dense(32, activation="relu", name="hidden"),
        keras.layers.Dense(1, name="load"),
    ],
    name="station_load",
)
model.compile(keras.optimizers.Adam(1e-3), "mse")
history = model.fit(x, load, batch_size=64, epochs=1, shuffle=False, verbose=0)
print("final loss:", history.history["loss"][-1])
