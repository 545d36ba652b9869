"""Store-sales model with two named inputs; one store has zero visits and `np.log` makes -inf.

User story: a Functional model takes a dict `{"visits": ..., "calendar": ...}`. Visit counts are
log-transformed with `np.log(counts)` (instead of `np.log1p`). Counts are in the tens, except that
store-day 2718 was closed and has 0 visits, so its feature is -inf. `fit` shuffles the rows.

Fault: one non-finite input record (log of 0 in preprocessing), dict inputs, shuffled `fit`.
Counterfactual checked: `np.log1p(counts)` trains finite.
"""

EXPECTED = {
    "root_cause": "input_nonfinite",
    "layer": None,
    "op": None,
    "dataset_indices": [2718],
    "step": 10,
}

import keras
import numpy as np

keras.utils.set_random_seed(4)
rng = np.random.default_rng(4)

n = 3000
counts = rng.poisson(25, (n, 3)).astype("float64") + 1
counts[2718, 1] = 0  # store closed that day
day = rng.integers(0, 7, n)
calendar = np.eye(7, dtype="float32")[day]
with np.errstate(divide="ignore"):
    visits = np.log(counts).astype("float32")
sales = (0.4 * np.log1p(counts).sum(axis=1) + 0.3 * (day >= 5) + rng.normal(0, 0.1, n)).astype(
    "float32"
)

visits_in = keras.Input((3,), name="visits")
calendar_in = keras.Input((7,), name="calendar")
h_visits = keras.layers.Dense(16, activation="relu", name="visits_dense")(visits_in)
h_calendar = keras.layers.Dense(4, activation="relu", name="calendar_dense")(calendar_in)
merged = keras.layers.Concatenate(name="merge")([h_visits, h_calendar])
out = keras.layers.Dense(1, name="sales")(merged)
model = keras.Model({"visits": visits_in, "calendar": calendar_in}, out, name="store_sales")
model.compile(keras.optimizers.Adam(3e-3), "mse")
history = model.fit(
    {"visits": visits, "calendar": calendar}, sales, batch_size=64, epochs=1, verbose=0
)
print("final loss:", history.history["loss"][-1])
