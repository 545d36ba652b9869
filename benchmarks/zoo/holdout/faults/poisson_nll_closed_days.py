"""Store-visits count model with a full Poisson log-likelihood; closed days are coded as -1.

User story: a subclassed model predicts daily visitor counts from 8 calendar/weather features and
is trained with the user's own full Poisson negative log-likelihood
`rate - y * log(rate) + lgamma(y + 1)` (they wanted the true NLL value on their dashboard). The
data warehouse codes "store closed" as a count of -1, and one such day (row 1100) slipped into the
export. A count of -1 is outside the domain of a Poisson likelihood: lgamma(0) = inf, so the loss
of that batch is inf. Arrays, `shuffle=False`, batch 50.

Fault: a target outside the loss's domain (a negative count).
Counterfactual checked: dropping rows with `visits < 0` trains finite.
"""

EXPECTED = {
    "root_cause": "invalid_target",
    "layer": None,
    "op": None,
    "dataset_indices": [1100],
    "step": 22,
}

import keras
import numpy as np
import tensorflow as tf
from keras import ops

keras.utils.set_random_seed(404)
rng = np.random.default_rng(404)

n = 1600
x = rng.normal(size=(n, 8)).astype("float32")
visits = rng.poisson(np.exp(2.0 + 0.4 * x[:, 0] - 0.3 * x[:, 1])).astype("float32")
visits[1100] = -1.0  # store closed


class VisitModel(keras.Model):
    def __init__(self):
        super().__init__(name="visit_model")
        self.hidden = keras.layers.Dense(32, activation="relu", name="hidden")
        self.log_rate = keras.layers.Dense(1, name="log_rate")

    def call(self, inputs):
        return ops.exp(self.log_rate(self.hidden(inputs)))


def poisson_nll(y_true, rate):
    y_true = ops.reshape(y_true, ops.shape(rate))
    return ops.mean(rate - y_true * ops.log(rate) + tf.math.lgamma(y_true + 1.0))


model = VisitModel()
model.compile(keras.optimizers.Adam(3e-3), poisson_nll)
history = model.fit(x, visits, batch_size=50, epochs=1, shuffle=False, verbose=0)
print("final loss:", history.history["loss"][-1])
