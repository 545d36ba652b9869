"""Cold-chain spoilage classifier: six summary features per shipment from a temperature logger,
all near unit scale, an MLP with He-normal init, two logits, `class_weight={0: 1, 1: 12}` for the
~9% spoiled shipments, `fit(shuffle=True)`.

Planted fault: on shipment 2047 the logger's probe came loose and its firmware writes FLT_MAX
(3.4e38) for "no reading" into both temperature columns; the export kept it. The value is finite,
but every `dense_in` unit whose two temperature weights sum to more than 1 overflows to inf on
that row: loss and gradients are NaN at step 7, the batch holding row 2047 under fit's seeded
shuffle.

Counterfactual (run, trains finite): replace the sentinel with the column medians.
Measured: step 7 in graph mode and in an eager replay; in the replay `dense_in` is the first
layer with a non-finite output from finite inputs (input max 3.4e38).
"""

EXPECTED = {
    "root_cause": "input_outlier",
    "layer": "dense_in",
    "op": None,
    "dataset_indices": [2047],
    "step": 7,
}

import keras
import numpy as np

keras.utils.set_random_seed(13)
rng = np.random.default_rng(13)

N = 3000
temp_excursion = rng.gamma(1.5, 0.8, size=N)  # degree-hours above 8 C, / 10
peak_temp = 0.3 * temp_excursion + rng.normal(0, 0.2, size=N)  # (peak C - 8) / 10
humidity = rng.beta(4, 3, size=N)  # fraction
shock_g = rng.gamma(2.0, 0.4, size=N)
transit_days = rng.gamma(3.0, 0.7, size=N)
door_opens = rng.poisson(1.5, size=N) / 3.0
features = np.stack(
    [temp_excursion, peak_temp, humidity, shock_g, transit_days, door_opens], axis=1
).astype("float32")
risk = 1.6 * temp_excursion + 0.8 * transit_days - 4.0 + rng.normal(0, 0.5, size=N)
spoiled = (risk > 2.2).astype("int32")  # about 9% of shipments
# The logger's temperature probe came loose on one shipment; the firmware writes FLT_MAX
# for "no reading" in both temperature columns and the export kept it.
features[2047, :2] = np.finfo(np.float32).max

model = keras.Sequential(
    [
        keras.Input((6,)),
        keras.layers.Dense(32, activation="relu", kernel_initializer="he_normal", name="dense_in"),
        keras.layers.Dense(32, activation="relu", kernel_initializer="he_normal", name="dense_mid"),
        keras.layers.Dense(2, name="spoiled_logits"),
    ]
)
model.compile(
    optimizer=keras.optimizers.Adam(1e-3),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
)
history = model.fit(
    features,
    spoiled,
    class_weight={0: 1.0, 1: 12.0},
    batch_size=64,
    epochs=2,
    shuffle=True,
    verbose=2,
)
print("final loss:", history.history["loss"][-1])
