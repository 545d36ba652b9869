"""Hourly page-view forecast with an exponential Poisson head under mixed_float16.

User story: a web-analytics team forecasts page views per hour (2e3 to 2e5) from 16 standardized
calendar and traffic features. Following the usual advice for count models, the output is
`Dense(1, activation="exponential")` with a Poisson loss and its bias initialized at
log(mean count). To speed training up they switched on the `mixed_float16` policy for the whole
model (output layer included). In float16 `exp` overflows above log(65504) ~ 11.09, i.e. for any
hour predicted above 65504 views. With the bias at log(mean) ~ 10.5 the head sits within ~0.6 of
that limit, so the spread from the hidden layers already pushes 17 of the 4096 hours to inf at
initialization; the first batch holding one (step 1) gets an inf prediction and a NaN Poisson loss
(the loss-scale optimizer skips those updates, the weights stay finite, and every later batch with
a busy hour is NaN again). Functional model, numpy arrays, 5 epochs.

Fault: a float16 activation (the exponential head) passes 65504 under mixed precision
(CONTRACT: float16_overflow).
Counterfactual checked: the same script with the default float32 policy trains finite (as does
keeping mixed_float16 but giving the head `dtype="float32"`).
"""

EXPECTED = {
    "root_cause": "float16_overflow",
    "layer": "views",
    "op": None,
    "dataset_indices": None,
    "step": 1,
}

import keras
import numpy as np

keras.mixed_precision.set_global_policy("mixed_float16")
keras.utils.set_random_seed(29)
rng = np.random.default_rng(29)

n = 4096
x = rng.normal(size=(n, 16)).astype("float32")
log_rate = 10.0 + 0.9 * x[:, 0] + 0.5 * x[:, 1] - 0.3 * x[:, 5] + 0.2 * x[:, 2] * x[:, 3]
views = rng.poisson(np.exp(np.clip(log_rate, 7.6, 12.2))).astype("float32")

inputs = keras.Input((16,), name="features")
h = keras.layers.Dense(64, activation="relu", name="hidden_1")(inputs)
h = keras.layers.Dense(64, activation="relu", name="hidden_2")(h)
outputs = keras.layers.Dense(
    1,
    activation="exponential",
    bias_initializer=keras.initializers.Constant(float(np.log(views.mean()))),
    name="views",
)(h)
model = keras.Model(inputs, outputs, name="pageviews")

model.compile(keras.optimizers.Adam(1e-3), "poisson")
history = model.fit(x, views, batch_size=64, epochs=5, verbose=0)
print("final loss:", history.history["loss"][-1])
