"""Claim-size model with a hand-written Gamma deviance; one policy has a claim of 0.

User story: claim amounts (in $1k) are modelled with a Gamma deviance loss written by hand,
`2 * (y / p - log(y / p) - 1)`, and a positive (exponential) output. The Gamma distribution has
no mass at 0, but row 1450 is a claim that was closed without payment: amount 0, so
`log(0 / p)` is -inf and the loss is +inf from that batch on. Unshuffled, batch 48.

Fault: a target outside the loss's domain (Gamma needs y > 0); the loss formula is the textbook
one and is finite for every valid target.
Counterfactual checked: dropping the zero claim trains finite.
"""

EXPECTED = {
    "root_cause": "invalid_target",
    "layer": None,
    "op": "Log",
    "dataset_indices": [1450],
    "step": 30,
}

import keras
import numpy as np
from keras import ops

keras.utils.set_random_seed(12)
rng = np.random.default_rng(12)

n = 2400
x = rng.normal(size=(n, 6)).astype("float32")
mean_claim = np.exp(0.5 + 0.3 * x[:, 0] - 0.2 * x[:, 1])
claims = rng.gamma(2.0, mean_claim / 2.0).astype("float32")
claims[1450] = 0.0  # closed without payment


def gamma_deviance(y_true, y_pred):
    ratio = y_true / y_pred
    return 2.0 * ops.mean(ratio - ops.log(ratio) - 1.0, axis=-1)


model = keras.Sequential(
    [
        keras.Input((6,)),
        keras.layers.Dense(16, activation="relu", name="hidden"),
        keras.layers.Dense(1, activation="exponential", name="claim_size"),
    ],
    name="claims",
)
model.compile(keras.optimizers.Adam(1e-3), gamma_deviance)
history = model.fit(x, claims, batch_size=48, epochs=1, shuffle=False, verbose=0)
print("final loss:", history.history["loss"][-1])
