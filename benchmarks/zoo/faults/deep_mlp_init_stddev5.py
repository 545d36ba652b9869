"""Deep relu MLP initialized with `RandomNormal(stddev=5)`; activations blow up at step 0.

User story: the user read that "small initial weights cause vanishing gradients" and set
`kernel_initializer=RandomNormal(stddev=5.0)` on a 12-layer relu MLP. Each layer multiplies the
activation scale by ~5 * sqrt(64 / 2) = 28, so the output is ~1e17 on the first batch and the
squared error overflows, even with a small Adam rate. Inputs and target are at unit scale.

Fault: initial weights at a scale that blows up activations.
Counterfactual checked: the default initializer (Glorot uniform) trains finite at the same
learning rate.
"""

EXPECTED = {
    "root_cause": "bad_initialization",
    "layer": None,
    "op": None,
    "dataset_indices": None,
    "step": 0,
}

import keras
import numpy as np

keras.utils.set_random_seed(36)
rng = np.random.default_rng(36)

n = 1024
x = rng.normal(size=(n, 16)).astype("float32")
y = (np.sin(x[:, 0]) + 0.5 * x[:, 1]).astype("float32")

init = keras.initializers.RandomNormal(stddev=5.0)
layers = [keras.Input((16,))]
layers += [
    keras.layers.Dense(64, activation="relu", kernel_initializer=init, name=f"dense_{i}")
    for i in range(12)
]
layers += [keras.layers.Dense(1, kernel_initializer=init, name="out")]
model = keras.Sequential(layers, name="deep_mlp")
model.compile(keras.optimizers.Adam(1e-4), "mse")
history = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
print("final loss:", history.history["loss"][-1])
