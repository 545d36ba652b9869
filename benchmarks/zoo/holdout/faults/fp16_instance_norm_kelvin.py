"""Mixed-precision weather model with a hand-written instance normalization over Kelvin readings.

User story: 48-hour traces of 4 station readings (temperature and dew point in Kelvin, ~250-310;
pressure anomaly and humidity, unit scale) predict tomorrow's rain (yes/no). Instead of scaling
the data, the user's first layer is a custom `InstanceNorm` that standardizes each trace itself
with `var = mean(x**2) - mean(x)**2`. In float32 that trains fine. The user then enabled
`mixed_float16`: the layer runs in float16, 290**2 = 84100 is past the float16 maximum (65504),
so `x**2` is inf and the normalized trace is NaN from the first batch.

Fault: a float16 value passed 65504 under mixed precision (the custom normalization layer).
Counterfactual checked: the same script without `set_global_policy("mixed_float16")` trains finite.
"""

EXPECTED = {
    "root_cause": "float16_overflow",
    "layer": "instance_norm",
    "op": "Square",
    "dataset_indices": None,
    "step": 0,
}

import keras
import numpy as np
from keras import ops

keras.mixed_precision.set_global_policy("mixed_float16")
keras.utils.set_random_seed(222)
rng = np.random.default_rng(222)


class InstanceNorm(keras.layers.Layer):
    def call(self, x):
        mean = ops.mean(x, axis=1, keepdims=True)
        var = ops.mean(ops.square(x), axis=1, keepdims=True) - ops.square(mean)
        return (x - mean) / ops.sqrt(var + 1e-3)


n, t = 1024, 48
temp = 285 + 10 * rng.normal(size=(n, 1)) + 3 * np.sin(np.arange(t) / 4)[None, :]
dew = temp - rng.uniform(1, 15, size=(n, 1))
pressure = rng.normal(size=(n, t))
humidity = rng.uniform(0, 1, size=(n, 1)) + 0.05 * rng.normal(size=(n, t))
traces = np.stack([temp, dew, pressure, humidity], axis=-1).astype("float32")
rain = ((temp[:, 0] - dew[:, 0] < 6) & (humidity[:, 0] > 0.4)).astype("float32")

model = keras.Sequential(
    [
        keras.Input((t, 4)),
        InstanceNorm(name="instance_norm"),
        keras.layers.Conv1D(16, 5, activation="relu", name="conv"),
        keras.layers.GlobalAveragePooling1D(name="gap"),
        keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="rain"),
    ],
    name="rain_tomorrow",
)
model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
history = model.fit(traces, rain, batch_size=64, epochs=2, verbose=0)
print("final loss:", history.history["loss"][-1])
