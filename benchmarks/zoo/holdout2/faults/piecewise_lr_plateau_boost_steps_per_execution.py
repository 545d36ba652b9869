"""Crop-yield regression (t/ha, 6 +- 1.5): an adapted Normalization layer and an MLP, SGD with
momentum 0.9, `steps_per_execution=8`, `fit(shuffle=True)`. The loss plateaus around 0.15, so the
user raises the rate ten-fold at each boundary with `PiecewiseConstantDecay(boundaries=[128,
192], values=[0.005, 0.05, 0.5])`.

Planted fault: 0.5 is far past what this loss surface tolerates. From step 192 the epoch's
running-mean loss goes 0.15 -> 1.06 (step 194) -> 13.9 (202) -> 2.6e5 (204) -> 1.4e20 (205) and
the loss is inf at step 206, inside the execution that runs steps 200-207.

Counterfactual (run, trains finite): `values=[0.005, 0.05, 0.05]`.
Measured: step 206 with `steps_per_execution=1` in graph mode and in an eager replay; with 8 the
weights after 200 updates are identical to those with 1 and the execution of steps 200-207 ends
non-finite. Every layer output is finite at step 206 (max 8e31), the squared error overflows.
"""

EXPECTED = {
    "root_cause": "learning_rate_too_high",
    "layer": None,
    "op": None,
    "dataset_indices": None,
    "step": 206,
}

import keras
import numpy as np

keras.utils.set_random_seed(40)
rng = np.random.default_rng(40)

N, D = 4096, 12
features = rng.normal(size=(N, D)) * rng.uniform(0.5, 30, size=D) + rng.uniform(-50, 50, size=D)
true_w = rng.normal(size=D) / rng.uniform(0.5, 30, size=D)
signal = features @ true_w + 0.5 * np.tanh(features[:, 3] / 10)
yield_t_ha = 6.0 + 1.5 * (signal - signal.mean()) / signal.std() + rng.normal(0, 0.3, N)
yield_t_ha = yield_t_ha.astype("float32")  # tonnes per hectare
features = features.astype("float32")

normalize = keras.layers.Normalization(name="normalize")
normalize.adapt(features)

model = keras.Sequential(
    [
        keras.Input((D,)),
        normalize,
        keras.layers.Dense(64, activation="relu", name="hidden_1"),
        keras.layers.Dense(64, activation="relu", name="hidden_2"),
        keras.layers.Dense(1, name="yield"),
    ]
)
# The loss plateaus around 0.15 after ~130 steps, so raise the rate ten-fold at each
# boundary to "kick it off the plateau".
schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
    boundaries=[128, 192], values=[0.005, 0.05, 0.5]
)
model.compile(
    optimizer=keras.optimizers.SGD(learning_rate=schedule, momentum=0.9),
    loss="mse",
    steps_per_execution=8,
)
history = model.fit(features, yield_t_ha, batch_size=64, epochs=5, shuffle=True, verbose=2)
print("final loss:", history.history["loss"][-1])
