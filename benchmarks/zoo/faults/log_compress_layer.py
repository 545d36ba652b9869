"""Subclassed spectrum model with a custom layer taking `log` of learned, possibly negative values.

User story: a custom `LogCompress` layer applies `ops.log` to a Dense projection of the (positive,
[0, 1]-scaled) spectra, "because intensities are positive". The projection is not constrained,
so some of its outputs are negative and their log is NaN in the first forward pass.

Fault: log of values <= 0 in a layer's forward computation.
Counterfactual checked: `ops.log(ops.softplus(x) + 1e-6)` trains finite.
"""

EXPECTED = {
    "root_cause": "unstable_op",
    "layer": "log_compress",
    "op": "Log",
    "dataset_indices": None,
    "step": 0,
}

import keras
import numpy as np
from keras import ops

keras.utils.set_random_seed(26)
rng = np.random.default_rng(26)


class LogCompress(keras.layers.Layer):
    """Dense projection followed by log compression of the dynamic range."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.proj = keras.layers.Dense(units, name="proj")

    def call(self, x):
        return ops.log(self.proj(x))


class SpectrumRegressor(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.compress = LogCompress(16, name="log_compress")
        self.hidden = keras.layers.Dense(16, activation="relu", name="hidden")
        self.head = keras.layers.Dense(1, name="concentration")

    def call(self, x):
        return self.head(self.hidden(self.compress(x)))


n = 1024
spectra = rng.random((n, 32)).astype("float32")
conc = (spectra[:, 5] * 2 - spectra[:, 20] + rng.normal(0, 0.05, n)).astype("float32")

model = SpectrumRegressor(name="spectrum")
model.compile(keras.optimizers.Adam(1e-3), "mse")
history = model.fit(spectra, conc, batch_size=32, epochs=1, verbose=0)
print("final loss:", history.history["loss"][-1])
