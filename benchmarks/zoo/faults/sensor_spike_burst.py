"""Vibration regression; an ADC glitch wrote three consecutive readings of ~2e5.

User story: accelerometer features are standardized (unit scale), but rows 1200-1202 come from a
glitch burst where one channel read ~2e5 instead of ~1. SGD with momentum at a rate that trains
this model well on clean data. The glitch batch (step 37) still has a finite loss, but its huge
gradient throws the weights so far that the next batch's squared error overflows (step 38).
`dataset_indices` names the rows that drove the blow-up, which sit in the batch before the
first non-finite step. Unshuffled (time order), batch 32.

Fault: three finite but extreme input records among unit-scale data.
Counterfactual checked: dropping rows 1200-1202 trains finite at the same learning rate.
"""

EXPECTED = {
    "root_cause": "input_outlier",
    "layer": None,
    "op": None,
    "dataset_indices": [1200, 1201, 1202],
    "step": 38,
}

import keras
import numpy as np

keras.utils.set_random_seed(15)
rng = np.random.default_rng(15)

n = 2400
x = rng.normal(size=(n, 6)).astype("float32")
wear = (np.tanh(x[:, 0]) + 0.5 * x[:, 1] * x[:, 2] + rng.normal(0, 0.1, n)).astype("float32")
x[1200:1203, 3] = [2.1e5, 1.8e5, 2.4e5]  # glitch burst

model = keras.Sequential(
    [
        keras.Input((6,)),
        keras.layers.Dense(32, activation="relu", name="hidden_1"),
        keras.layers.Dense(16, activation="relu", name="hidden_2"),
        keras.layers.Dense(1, name="wear"),
    ],
    name="vibration",
)
model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "mse")
history = model.fit(x, wear, batch_size=32, epochs=1, shuffle=False, verbose=0)
print("final loss:", history.history["loss"][-1])
