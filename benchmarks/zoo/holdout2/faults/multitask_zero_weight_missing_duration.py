"""Delivery app, one Functional model with two heads on a shared trunk: "late" (sigmoid, binary
cross-entropy) and "duration" (standardized minutes, MSE), trained with `fit(shuffle=True)` and a
dict of per-output `sample_weight`s.

Planted fault: the courier app crashed on order 1517, so its duration is NaN. The user "masks"
it with `sample_weight={"duration": 0}` for that row, but the weighted loss is 0 * NaN = NaN: the
duration loss, the total loss and the gradients of the trunk and duration head are NaN in the
batch that holds row 1517 (step 35 of the first epoch under fit's seeded shuffle).

Counterfactual (run, trains finite): keep the zero weight and also replace the missing value,
`duration = np.nan_to_num(duration)`.
Measured: step 35 in graph mode and in an eager replay; the replayed batch contains row 1517 and
every layer output is finite (targets only), so no layer qualifies.
"""

EXPECTED = {
    "root_cause": "target_nonfinite",
    "layer": None,
    "op": None,
    "dataset_indices": [1517],
    "step": 35,
}

import keras
import numpy as np

keras.utils.set_random_seed(5)
rng = np.random.default_rng(5)

N = 2400
distance_km = rng.gamma(2.0, 2.0, size=N)
items = rng.integers(1, 12, size=N)
hour = rng.integers(0, 24, size=N)
rain = rng.random(N) < 0.2
features = np.stack(
    [
        (distance_km - 4.0) / 2.8,
        (items - 6.0) / 3.2,
        np.sin(2 * np.pi * hour / 24),
        np.cos(2 * np.pi * hour / 24),
        rain.astype(float),
    ],
    axis=1,
).astype("float32")
minutes = 12 + 4.5 * distance_km + 0.8 * items + 9 * rain + rng.normal(0, 3, size=N)
late = (minutes > 40).astype("float32")
duration = ((minutes - 32.0) / 12.0).astype("float32")  # standardized minutes

# The courier app crashed on one order, so its delivery time was never recorded.
duration[1517] = np.nan
duration_weight = np.where(np.isnan(duration), 0.0, 1.0).astype("float32")

inputs = keras.Input((5,), name="order")
h = keras.layers.Dense(32, activation="relu", name="shared_1")(inputs)
h = keras.layers.Dense(32, activation="relu", name="shared_2")(h)
late_out = keras.layers.Dense(1, activation="sigmoid", name="late")(h)
duration_out = keras.layers.Dense(1, name="duration")(h)
model = keras.Model(inputs, {"late": late_out, "duration": duration_out})
model.compile(
    optimizer=keras.optimizers.Adam(2e-3),
    loss={"late": "binary_crossentropy", "duration": "mse"},
)
history = model.fit(
    features,
    {"late": late, "duration": duration},
    sample_weight={"late": np.ones(N, "float32"), "duration": duration_weight},
    batch_size=64,
    epochs=2,
    shuffle=True,
    verbose=2,
)
print("final loss:", history.history["loss"][-1])
