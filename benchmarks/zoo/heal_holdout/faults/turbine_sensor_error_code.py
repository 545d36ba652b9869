"""Wind-turbine power regression where the SCADA export encodes sensor faults as 1e30.

User story: a wind-farm engineer predicts standardized power output from 10 standardized SCADA
channels (wind speed, pitch, rotor speed, nacelle temperature, ...). The SCADA historian writes
the error code 1e30 when a channel drops out; three 10-minute records have it in the rotor-speed
channel (column 2). It is a finite number, so `np.isfinite` checks pass. A Sequential MLP is
trained with SGD (Nesterov momentum) on shuffled numpy arrays for 5 epochs. The first batch with
one of those records has activations ~1e29, the squared error overflows to inf and the update
writes inf/NaN into the weights.

Fault: a few extreme but finite input records, rows 742, 743 and 1968 (CONTRACT: input_outlier).
Counterfactual checked: dropping the rows whose |value| > 1e6 trains finite with the same model
and optimizer.
"""

EXPECTED = {
    "root_cause": "input_outlier",
    "layer": None,
    "op": None,
    "dataset_indices": [742, 743, 1968],
    "step": 8,
}

import keras
import numpy as np

keras.utils.set_random_seed(31)
rng = np.random.default_rng(31)

n = 2500
x = rng.normal(size=(n, 10)).astype("float32")
power = np.tanh(1.5 * x[:, 0]) + 0.2 * x[:, 2] - 0.1 * x[:, 5] + rng.normal(0, 0.05, n)
power = ((power - power.mean()) / power.std()).astype("float32")
x[[742, 743, 1968], 2] = 1e30  # historian error code for a dropped rotor-speed channel

model = keras.Sequential(
    [
        keras.Input((10,)),
        keras.layers.Dense(64, activation="elu", name="dense_in"),
        keras.layers.Dense(64, activation="elu", name="dense_mid"),
        keras.layers.Dense(1, name="power"),
    ],
    name="turbine_power",
)
model.compile(keras.optimizers.SGD(0.005, momentum=0.9, nesterov=True), "mse")
history = model.fit(x, power, batch_size=32, epochs=5, verbose=0)
print("final loss:", history.history["loss"][-1])
