"""Pedometer: count footsteps (in tens) in 300-sample accelerometer windows. A `tf.data` `.map`
adds a high-pass channel; Bidirectional SimpleRNN with ReLU -> Dense; SGD with momentum and
`clipvalue=5.0` "because RNNs need gradient clipping".

Planted fault: the ReLU recurrence over 300 steps amplifies gradients, and per-entry clipping at
5 does not bound the update (nor can it help once the gradients themselves overflow). The global
gradient norm goes 9.7, 11.4, 110 over steps 0-2; at step 3 the backward-direction RNN outputs
6.6e19, the squared error overflows, and the loss and gradients are inf/NaN.

Counterfactual (run, trains finite): `clipnorm=1.0` in place of `clipvalue=5.0`.
Measured: step 3 in graph mode and in an eager replay (gradient norms from the eager run); every
layer output is finite at step 3 (max 6.6e19), the overflow is in the loss.
"""

EXPECTED = {
    "root_cause": "exploding_gradients",
    "layer": None,
    "op": None,
    "dataset_indices": None,
    "step": 3,
}

import keras
import numpy as np
import tensorflow as tf

keras.utils.set_random_seed(9)
rng = np.random.default_rng(9)

N, T = 512, 300  # 300-sample accelerometer windows
cadence = rng.uniform(0.02, 0.12, size=N)  # steps per sample
footfalls = (rng.random((N, T)) < cadence[:, None]).astype("float32")
magnitude = footfalls + rng.normal(0, 0.05, size=(N, T)).astype("float32")
steps_taken = (footfalls.sum(axis=1) / 10).astype("float32")[:, None]  # tens of steps


def add_channels(window, target):
    # raw magnitude plus a small high-pass channel
    high_pass = window - tf.concat([window[:1], window[:-1]], axis=0)
    return tf.stack([window, 0.1 * high_pass], axis=-1), target


ds = tf.data.Dataset.from_tensor_slices((magnitude, steps_taken)).map(add_channels).batch(32)

model = keras.Sequential(
    [
        keras.Input((T, 2)),
        keras.layers.Bidirectional(keras.layers.SimpleRNN(32, activation="relu"), name="birnn"),
        keras.layers.Dense(1, name="steps"),
    ]
)
# RNNs need gradient clipping, so clip every gradient entry to [-5, 5].
model.compile(optimizer=keras.optimizers.SGD(3e-3, momentum=0.9, clipvalue=5.0), loss="mse")
history = model.fit(ds, epochs=4, verbose=2)
print("final loss:", history.history["loss"][-1])
