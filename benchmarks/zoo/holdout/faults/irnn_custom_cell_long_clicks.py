"""Custom IRNN cell (relu, identity recurrent init) over 200-step click streams; gradients explode.

User story: following the "IRNN" recipe, the user wrote a custom recurrent cell,
`h = relu(x @ W + h @ U + b)` with `U` initialized to the identity, wrapped it in
`keras.layers.RNN` and trains it through `fit` on an unshuffled `tf.data` pipeline (batch 32,
SGD with momentum, lr 1e-5) to predict a session score from 200 steps of click features. With the
identity recurrence and relu, the backward pass through 200 steps multiplies the error signal
again and again; the first updates make `U` slightly expanding, the gradient norm grows from step
to step (global norm 2e4, 9e13, 9e9, 7e15) and the run overflows at step 4. Measured: at step 4
every layer output and gradient is still finite (the RNN output is ~1e19); the squared error
overflows, so no layer qualifies under the contract's definition and `layer` is None.

Fault: gradient norms grow over steps until overflow (long relu recurrence without clipping).
Counterfactual checked: `clipnorm=1.0` on the optimizer trains finite.
"""

EXPECTED = {
    "root_cause": "exploding_gradients",
    "layer": None,
    "op": None,
    "dataset_indices": None,
    "step": 4,
}

import keras
import numpy as np
import tensorflow as tf
from keras import ops


class IRNNCell(keras.layers.Layer):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units

    def build(self, input_shape):
        self.w = self.add_weight((input_shape[-1], self.units), initializer="glorot_uniform")
        self.u = self.add_weight((self.units, self.units), initializer="identity")
        self.b = self.add_weight((self.units,), initializer="zeros")

    def call(self, inputs, states):
        h = ops.relu(inputs @ self.w + states[0] @ self.u + self.b)
        return h, [h]


keras.utils.set_random_seed(444)
rng = np.random.default_rng(444)
n, t = 512, 200
clicks = rng.normal(size=(n, t, 2)).astype("float32")
score = (clicks[:, :20, 0].sum(axis=1, keepdims=True) / 5).astype("float32")

dataset = tf.data.Dataset.from_tensor_slices((clicks, score)).batch(32)
model = keras.Sequential(
    [
        keras.Input((t, 2)),
        keras.layers.RNN(IRNNCell(32), name="rnn"),
        keras.layers.Dense(1, name="score"),
    ],
    name="session_irnn",
)
model.compile(keras.optimizers.SGD(1e-5, momentum=0.9), "mse")
history = model.fit(dataset, epochs=1, verbose=0)
print("final loss:", history.history["loss"][-1])
