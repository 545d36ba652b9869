"""Bearing-wear regression from long vibration windows with stacked relu SimpleRNNs.

User story: a maintenance engineer predicts the (standardized) remaining wear of a bearing from
400-step windows of 3 accelerometer channels. They chose `SimpleRNN(activation="relu")` because
"relu trains faster than tanh", stacked two of them in a Functional model, and train with
plain SGD (learning rate 0.05) for 6 epochs on numpy arrays. Inputs and targets are unit scale
and the loss falls for three epochs (0.91, 0.73, 0.62), but the relu recurrence has no
saturation: once the recurrent kernel's gain passes 1, the backward pass through 400 steps
multiplies the gradient by it at each step, and in epoch 4 (global step 49) the loss and the
weights go non-finite.

Fault: exploding gradients through a long unbounded (relu) recurrence, no clipping (CONTRACT:
exploding_gradients).
Counterfactual checked: the same model with `SGD(0.05, clipnorm=1.0)`
trains finite.
"""

EXPECTED = {
    "root_cause": "exploding_gradients",
    "layer": None,
    "op": None,
    "dataset_indices": None,
    "step": 49,
}

import keras
import numpy as np

keras.utils.set_random_seed(13)
rng = np.random.default_rng(13)

n, steps = 512, 400
wear = rng.uniform(0, 1, n).astype("float32")
t = np.arange(steps, dtype="float32")
freq = 0.05 + 0.1 * wear[:, None]
signal = np.stack(
    [
        np.sin(freq * t),
        (0.5 + wear[:, None]) * np.sin(2.3 * freq * t + 1.0),
        rng.normal(0, 0.3 + 0.5 * wear[:, None], size=(n, steps)),
    ],
    axis=-1,
).astype("float32")
target = ((wear - wear.mean()) / wear.std()).astype("float32")

inputs = keras.Input((steps, 3), name="vibration")
h = keras.layers.SimpleRNN(48, activation="relu", return_sequences=True, name="rnn_1")(inputs)
h = keras.layers.SimpleRNN(48, activation="relu", name="rnn_2")(h)
outputs = keras.layers.Dense(1, name="wear")(h)
model = keras.Model(inputs, outputs, name="bearing_wear")

model.compile(keras.optimizers.SGD(0.05), "mse")
history = model.fit(signal, target, batch_size=32, epochs=6, verbose=0)
print("final loss:", history.history["loss"][-1])
