"""Relu SimpleRNN forecasting over long sequences; the gradient norm explodes, then the weights.

User story: a SimpleRNN with `activation="relu"` (chosen "to avoid vanishing gradients") reads
100-step sequences, with the default (orthogonal) recurrent initializer and SGD(0.05,
momentum=0.9). For dozens of steps the gradient norm stays around 1; then the recurrence crosses
a cliff, the gradient norm jumps by about four orders of magnitude in one step and keeps growing
for a few steps, the weights inflate, and at step 90 the RNN's own forward pass overflows.
(Measured in a scratch copy of this setup: global gradient norm 1.4 -> 3.2e4 in one step.)

Fault: exploding gradients through a long recurrence.
Counterfactual checked: the same optimizer with `clipnorm=1.0` trains finite. (A rate of 0.005
also trains: clipping is the fix that keeps the rate.)
"""

EXPECTED = {
    "root_cause": "exploding_gradients",
    "layer": "rnn",
    "op": None,
    "dataset_indices": None,
    "step": 90,  # first non-finite loss unguarded, TF 2.21 / Keras 3.15 (89 when written)
}

import keras
import numpy as np

keras.utils.set_random_seed(31)
rng = np.random.default_rng(31)

n, steps = 512, 100
x = rng.normal(size=(n, steps, 2)).astype("float32")
y = (x[:, -10:, 0].sum(axis=1, keepdims=True) * 0.3).astype("float32")

model = keras.Sequential(
    [
        keras.Input((steps, 2)),
        keras.layers.SimpleRNN(32, activation="relu", name="rnn"),
        keras.layers.Dense(1, name="forecast"),
    ],
    name="relu_rnn",
)
model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "mse")
history = model.fit(x, y, batch_size=32, epochs=6, verbose=0)
print("final loss:", history.history["loss"][-1])
