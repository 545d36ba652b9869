"""Mixed-precision Poisson model of page views; the exponential output layer stays in float16.

User story: daily page views (tens of thousands) are modelled with `loss="poisson"` and an
`activation="exponential"` output. The user enabled `mixed_float16` but did not give the output
layer `dtype="float32"` as the mixed-precision guide advises. The log-rate the model must learn
is ~11.3; as soon as the output's pre-activation passes 11.09, exp() exceeds 65504 and is inf in
float16. In float32 the same model trains fine.

Fault: a float16 value passed 65504 under mixed precision (output layer).
Counterfactual checked: `dtype="float32"` on the output layer trains finite.
"""

EXPECTED = {
    "root_cause": "float16_overflow",
    "layer": "views",
    "op": "Exp",
    "dataset_indices": None,
    "step": 23,
}

import keras
import numpy as np

keras.mixed_precision.set_global_policy("mixed_float16")
keras.utils.set_random_seed(35)
rng = np.random.default_rng(35)

n = 2048
x = rng.normal(size=(n, 6)).astype("float32")
views = rng.poisson(np.exp(11.3 + 0.3 * x[:, 0] - 0.2 * x[:, 1])).astype("float32")

model = keras.Sequential(
    [
        keras.Input((6,)),
        keras.layers.Dense(32, activation="relu", name="hidden"),
        keras.layers.Dense(1, activation="exponential", name="views"),
    ],
    name="page_views",
)
model.compile(keras.optimizers.Adam(0.05), "poisson")
history = model.fit(x, views, batch_size=64, epochs=3, verbose=0)
print("final loss:", history.history["loss"][-1])
