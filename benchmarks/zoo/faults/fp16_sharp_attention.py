"""Mixed-precision model whose hand-written attention `exp` passes the float16 limit 65504.

User story: to speed up training the user turned on
`keras.mixed_precision.set_global_policy("mixed_float16")`. A custom attention-pooling layer
scores tokens, divides by a temperature of 0.05 and exponentiates. Exponents of ~20-40 are
harmless in float32 (exp(40) = 2.4e17), but in float16 anything above exp(11.09) = 65504 is inf,
and inf/inf is NaN. The loss scaler cannot help: the forward pass itself overflows.

Fault: a float16 value passed 65504 under mixed precision.
Counterfactual checked: the same script with the default float32 policy trains finite.
"""

EXPECTED = {
    "root_cause": "float16_overflow",
    "layer": "attention_pool",
    "op": "Exp",
    "dataset_indices": None,
    "step": 5,
}

import keras
import numpy as np
from keras import ops

keras.mixed_precision.set_global_policy("mixed_float16")
keras.utils.set_random_seed(34)
rng = np.random.default_rng(34)


class AttentionPool(keras.layers.Layer):
    def __init__(self, temperature=0.05, **kwargs):
        super().__init__(**kwargs)
        self.temperature = temperature
        self.score = keras.layers.Dense(1, name="score")

    def call(self, h):
        e = ops.exp(self.score(h) / self.temperature)
        return ops.sum(e * h, axis=1) / ops.sum(e, axis=1)


n, length = 1024, 24
x = rng.normal(size=(n, length, 8)).astype("float32")
y = (x[:, :, 0].max(axis=1) > 2.0).astype("float32")

inputs = keras.Input((length, 8))
h = keras.layers.Dense(32, activation="relu", name="proj")(inputs)
h = keras.layers.Dense(32, activation="relu", name="proj_2")(h)
pooled = AttentionPool(name="attention_pool")(h)
out = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="label")(pooled)
model = keras.Model(inputs, out, name="fp16_attention")
model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
history = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
print("final loss:", history.history["loss"][-1])
