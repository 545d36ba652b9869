"""Crop-yield regression with a subclassed model; four fields have a missing (NaN) harvest.

User story: an agronomist predicts standardized yield per field from 9 soil and weather
features. The yield table was joined onto the feature table; four fields were never harvested
(hail), so the join left NaN in their yield. The features are clean and standardized. A small
subclassed model (two dense blocks and a head) is trained with SGD + momentum on shuffled numpy
arrays for 5 epochs. The very first batch holds one of those fields; it makes the MSE NaN and
the update writes NaN into every weight.

Fault: NaN targets at rows 57, 58, 1020 and 1777 (CONTRACT: target_nonfinite).
Counterfactual checked: keeping only rows with a finite yield (`np.isfinite(y)`) trains finite
with the same model and optimizer.
"""

EXPECTED = {
    "root_cause": "target_nonfinite",
    "layer": None,
    "op": None,
    "dataset_indices": [57, 58, 1020, 1777],
    "step": 0,
}

import keras
import numpy as np

keras.utils.set_random_seed(23)
rng = np.random.default_rng(23)

n = 2000
x = rng.normal(size=(n, 9)).astype("float32")
yield_t = (0.8 * x[:, 0] - 0.5 * x[:, 3] + 0.3 * x[:, 1] * x[:, 2] + rng.normal(0, 0.2, n)).astype(
    "float32"
)
yield_t = (yield_t - yield_t.mean()) / yield_t.std()
yield_t[[57, 58, 1020, 1777]] = np.nan  # never harvested: the join left NaN


class YieldModel(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.block_1 = keras.layers.Dense(48, activation="tanh", name="block_1")
        self.block_2 = keras.layers.Dense(24, activation="tanh", name="block_2")
        self.head = keras.layers.Dense(1, name="yield_head")

    def call(self, inputs):
        return self.head(self.block_2(self.block_1(inputs)))


model = YieldModel(name="crop_yield")
model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "mse")
history = model.fit(x, yield_t, batch_size=50, epochs=5, verbose=0)
print("final loss:", history.history["loss"][-1])
