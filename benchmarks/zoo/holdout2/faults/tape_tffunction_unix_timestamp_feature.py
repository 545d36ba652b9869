"""Daily building energy (MWh) from four years of meter readings: features are the raw Unix
timestamp in seconds (trend), temperature in C, humidity in %, a weekend flag; an MLP trained in a
`tf.function` `GradientTape` loop, chronological batches, SGD with momentum 0.9 and an
`ExponentialDecay` schedule starting at 1e-3.

Planted fault: nothing is scaled, and the timestamp column is ~1.6e9. Step 0 has a finite loss of
7e17 but a gradient norm of 3.9e18, and its update moves the hidden kernel to 1.5e15; at step 1
the hidden layer outputs 1.9e24 and the output layer `mwh` overflows to inf, so the loss and
gradients are non-finite at step 1.

Counterfactual (run, trains finite): standardize the feature columns, same optimizer and
schedule.
Measured: step 1 in the compiled loop (weights checked after each call) and in an eager run;
`mwh` is the first layer with a non-finite output from finite inputs.
"""

EXPECTED = {
    "root_cause": "unscaled_input",
    "layer": "mwh",
    "op": None,
    "dataset_indices": None,
    "step": 1,
}

import keras
import numpy as np
import tensorflow as tf

keras.utils.set_random_seed(4)
rng = np.random.default_rng(4)

N = 1460  # four years of daily meter readings, oldest first
start = 1_577_836_800  # 2020-01-01 00:00 UTC
timestamp = start + 86_400 * np.arange(N)
day_of_year = np.arange(N) % 365
temperature_c = 12 - 10 * np.cos(2 * np.pi * day_of_year / 365) + rng.normal(0, 3, size=N)
humidity_pct = np.clip(
    65 + 15 * np.sin(2 * np.pi * day_of_year / 365) + rng.normal(0, 8, N), 20, 100
)
weekend = ((np.arange(N) + 2) % 7 >= 5).astype(float)
features = np.stack([timestamp, temperature_c, humidity_pct, weekend], axis=1).astype("float32")
energy_mwh = (
    3.0
    + 0.09 * np.abs(temperature_c - 18)
    + 0.6 * weekend
    + 0.0004 * np.arange(N)
    + rng.normal(0, 0.2, size=N)
).astype("float32")[:, None]

model = keras.Sequential(
    [
        keras.Input((4,)),
        keras.layers.Dense(16, activation="relu", name="hidden"),
        keras.layers.Dense(1, name="mwh"),
    ]
)
schedule = keras.optimizers.schedules.ExponentialDecay(
    initial_learning_rate=1e-3, decay_steps=50, decay_rate=0.9
)
optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=0.9)
mse = keras.losses.MeanSquaredError()


@tf.function
def train_step(x, y):
    with tf.GradientTape() as tape:
        loss = mse(y, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
    return loss


batch_size = 32
loss = None
for epoch in range(3):
    for i in range(0, N, batch_size):
        loss = train_step(features[i : i + batch_size], energy_mwh[i : i + batch_size])
    print(f"epoch {epoch}: loss {float(loss):.4g}")
print("final loss:", float(loss))
