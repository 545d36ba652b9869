"""Price model trained on a hand-written log-space MSE; one listing has price 0.

User story: prices span orders of magnitude, so the user trains on
`mean(square(log(y_true) - log(y_pred)))` with a softplus output (always > 0). Listing 512 is a
free giveaway with price 0: `log(0)` is -inf, the loss is inf and its gradient is not finite.
Functional model, `fit` shuffles.

Fault: a target outside the loss's domain (log-space loss needs y > 0); predictions are positive
by construction.
Counterfactual checked: dropping row 512 trains finite.
"""

EXPECTED = {
    "root_cause": "invalid_target",
    "layer": None,
    "op": "Log",
    "dataset_indices": [512],
    "step": 6,
}

import keras
import numpy as np
from keras import ops

keras.utils.set_random_seed(13)
rng = np.random.default_rng(13)

n = 2000
x = rng.normal(size=(n, 5)).astype("float32")
price = np.exp(1.0 + 0.8 * x[:, 0] + 0.3 * x[:, 1] + rng.normal(0, 0.1, n)).astype("float32")
price[512] = 0.0  # a free listing


def log_mse(y_true, y_pred):
    return ops.mean(ops.square(ops.log(y_true) - ops.log(y_pred)), axis=-1)


inputs = keras.Input((5,), name="listing")
h = keras.layers.Dense(32, activation="relu", name="hidden")(inputs)
out = keras.layers.Dense(1, activation="softplus", name="price")(h)
model = keras.Model(inputs, out, name="listing_price")
model.compile(keras.optimizers.Adam(1e-3), log_mse)
history = model.fit(x, price[:, None], batch_size=50, epochs=1, verbose=0)
print("final loss:", history.history["loss"][-1])
