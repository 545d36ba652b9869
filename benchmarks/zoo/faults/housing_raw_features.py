"""Linear house-price regression fed raw features (square feet, year built, lot size, income).

User story: a one-layer Keras linear regression, the first model in many tutorials. The user
forgot to scale the inputs: square feet ~1500, year ~1990, lot ~8000, neighbourhood income
~60000. The price target is in $100k (unit scale). Plain SGD at 1e-3, a rate that trains this
model on standardized inputs, diverges within a few steps because the curvature of the loss
scales with the square of the raw features.

Fault: inputs far from unit scale (seed article, "poorly scaled data").
Counterfactual checked: standardizing x (same SGD(1e-3)) trains finite.
"""

EXPECTED = {
    "root_cause": "unscaled_input",
    "layer": None,
    "op": None,
    "dataset_indices": None,
    "step": 3,
}

import keras
import numpy as np

keras.utils.set_random_seed(16)
rng = np.random.default_rng(16)

n = 2000
sqft = rng.normal(1500, 500, n).clip(400)
year = rng.normal(1990, 20, n)
lot = rng.normal(8000, 3000, n).clip(1000)
income = rng.normal(60000, 20000, n).clip(10000)
x = np.stack([sqft, year, lot, income], axis=1).astype("float32")
price = 1.0 + sqft / 1000 + (year - 1990) / 50 + income / 50000 + rng.normal(0, 0.2, n)
price = price.astype("float32")

model = keras.Sequential(
    [
        keras.Input((4,)),
        keras.layers.Dense(1, name="price"),
    ],
    name="raw_housing",
)
model.compile(keras.optimizers.SGD(1e-3), "mse")
history = model.fit(x, price, batch_size=32, epochs=1, verbose=0)
print("final loss:", history.history["loss"][-1])
