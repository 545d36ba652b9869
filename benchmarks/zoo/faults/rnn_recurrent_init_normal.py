"""Relu SimpleRNN with `recurrent_initializer=RandomNormal(stddev=1)`; the state overflows.

User story: the user replaced the default orthogonal recurrent initializer with
`RandomNormal(stddev=1.0)` for a 32-unit relu RNN over 80 steps. The recurrent matrix then has
a spectral radius of ~5.7, so the hidden state grows ~4x per time step and overflows float32
inside the RNN on the very first batch.

Fault: initial weights at a scale that blows up activations (recurrent kernel).
Counterfactual checked: the default `recurrent_initializer` ("orthogonal") trains finite.
"""

EXPECTED = {
    "root_cause": "bad_initialization",
    "layer": "rnn",
    "op": None,
    "dataset_indices": None,
    "step": 0,
}

import keras
import numpy as np

keras.utils.set_random_seed(37)
rng = np.random.default_rng(37)

n, steps = 512, 80
x = rng.normal(size=(n, steps, 3)).astype("float32")
y = (x[:, -5:, 1].mean(axis=1, keepdims=True)).astype("float32")

model = keras.Sequential(
    [
        keras.Input((steps, 3)),
        keras.layers.SimpleRNN(
            32,
            activation="relu",
            recurrent_initializer=keras.initializers.RandomNormal(stddev=1.0),
            name="rnn",
        ),
        keras.layers.Dense(1, name="out"),
    ],
    name="rnn_bad_init",
)
model.compile(keras.optimizers.Adam(1e-4), "mse")
history = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
print("final loss:", history.history["loss"][-1])
