"""Bike-rental count model with a linear output layer and the Poisson loss.

User story: hourly rental counts are modelled with `loss="poisson"`, whose formula is
`y_pred - y_true * log(y_pred + eps)`; the output layer was left linear, so as soon as a
prediction is negative the log is NaN. Functional model with two inputs (weather, hour one-hot),
`fit` shuffles.

Fault: linear output into the Poisson loss.
Counterfactual checked: `activation="exponential"` on the output trains finite.
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

keras.utils.set_random_seed(20)
rng = np.random.default_rng(20)

n = 2400
weather = rng.normal(size=(n, 4)).astype("float32")
hour = rng.integers(0, 24, n)
hour_1h = np.eye(24, dtype="float32")[hour]
rate = np.exp(1.5 + 0.4 * weather[:, 0] + 0.8 * np.sin(hour / 24 * 2 * np.pi))
rentals = rng.poisson(rate).astype("float32")

w_in = keras.Input((4,), name="weather")
h_in = keras.Input((24,), name="hour")
h = keras.layers.Concatenate(name="merge")(
    [keras.layers.Dense(8, activation="relu", name="weather_dense")(w_in), h_in]
)
h = keras.layers.Dense(16, activation="relu", name="hidden")(h)
out = keras.layers.Dense(1, name="rentals")(h)  # linear
model = keras.Model([w_in, h_in], out, name="bike_rentals")
model.compile(keras.optimizers.Adam(1e-3), "poisson")
history = model.fit([weather, hour_1h], rentals, batch_size=64, epochs=1, verbose=0)
print("final loss:", history.history["loss"][-1])
