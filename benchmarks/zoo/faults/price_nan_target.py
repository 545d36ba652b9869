"""House-price regression where one sale price is missing and was read in as NaN.

User story: features are standardized properly and the price is in units of $100k. One listing
(row 1543 of 3000) has no recorded price; the CSV reader turned the empty cell into NaN, and
nobody dropped it. `fit` shuffles, so the NaN loss appears at a batch that depends on the order.

Fault: one non-finite target.
Counterfactual checked: dropping row 1543 trains finite.
"""

EXPECTED = {
    "root_cause": "target_nonfinite",
    "layer": None,
    "op": None,
    "dataset_indices": [1543],
    "step": 23,
}

import keras
import numpy as np

keras.utils.set_random_seed(5)
rng = np.random.default_rng(5)

n = 3000
x = rng.normal(size=(n, 8)).astype("float32")
price = 3.0 + x[:, 0] - 0.5 * x[:, 1] + 0.3 * x[:, 2] * x[:, 3] + rng.normal(0, 0.2, n)
price = price.astype("float32")
price[1543] = np.nan  # empty cell in the CSV

model = keras.Sequential(
    [
        keras.Input((8,)),
        keras.layers.Dense(64, activation="relu", name="dense_1"),
        keras.layers.Dense(32, activation="relu", name="dense_2"),
        keras.layers.Dense(1, name="price"),
    ],
    name="house_prices",
)
model.compile(keras.optimizers.Adam(1e-3), "mse")
history = model.fit(x, price, batch_size=64, epochs=1, verbose=0)
print("final loss:", history.history["loss"][-1])
