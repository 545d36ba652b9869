"""Churn model on a CSV export where one column happens to be constant.

User story: the features are standardized by hand, `(x - x.mean(0)) / x.std(0)`, a recipe
copied from a tutorial. In this month's export every customer has the same `region_code`, so that
column's std is 0 and the whole column becomes 0/0 = NaN: every row carries a NaN, and the very
first batch already has a NaN loss.

Fault: 0/0 in hand-written standardization (seed article, Example 2), all rows affected.
Counterfactual checked: dividing by `std + 1e-8` (the constant column becomes 0) trains finite.
"""

EXPECTED = {
    "root_cause": "input_nonfinite",
    "layer": None,
    "op": None,
    "dataset_indices": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    "step": 0,
}

import keras
import numpy as np

keras.utils.set_random_seed(3)
rng = np.random.default_rng(3)

n = 1600
tenure = rng.gamma(2.0, 12.0, n)
monthly = rng.normal(60.0, 20.0, n)
tickets = rng.poisson(1.5, n).astype(float)
region_code = np.full(n, 3.0)  # constant in this export
raw = np.stack([tenure, monthly, tickets, region_code], axis=1)
churn = ((tickets > 2) | (tenure < 6)).astype("float32")

with np.errstate(invalid="ignore", divide="ignore"):
    features = ((raw - raw.mean(axis=0)) / raw.std(axis=0)).astype("float32")

model = keras.Sequential(
    [
        keras.Input((4,)),
        keras.layers.Dense(32, activation="relu", name="hidden"),
        keras.layers.Dense(1, activation="sigmoid", name="churn"),
    ],
    name="churn_mlp",
)
model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
history = model.fit(features, churn, batch_size=16, epochs=1, shuffle=False, verbose=0)
print("final loss:", history.history["loss"][-1])
