"""Deep tabular MLP (tf.data, shuffled) whose Dense kernels are all initialized uniform in [0, 1].

User story: a 26-layer Dense(128, relu) network for a tabular regression (unit-scale features
and target). The user set `kernel_initializer=keras.initializers.RandomUniform(0.0, 1.0)` on every
layer ("weights between 0 and 1"). All weights are positive, so each layer multiplies the
activations by about 0.5 * fan_in = 64; by the 22nd layer (`dense_21`) the activations pass
float32's maximum and are inf in the first forward pass.

Fault: initial weights at a scale that blows up activations.
Counterfactual checked: the default `glorot_uniform` initializer trains finite.
"""

EXPECTED = {
    "root_cause": "bad_initialization",
    "layer": "dense_21",
    "op": None,
    "dataset_indices": None,
    "step": 0,
}

import keras
import numpy as np
import tensorflow as tf

keras.utils.set_random_seed(555)
rng = np.random.default_rng(555)

n = 512
x = rng.normal(size=(n, 12)).astype("float32")
y = (np.tanh(x[:, :3]).sum(axis=1, keepdims=True) + 0.1 * rng.normal(size=(n, 1))).astype("float32")
dataset = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(n, seed=555).batch(64)

init = keras.initializers.RandomUniform(0.0, 1.0, seed=555)
layers = [keras.Input((12,))]
for k in range(26):
    layers.append(
        keras.layers.Dense(128, activation="relu", kernel_initializer=init, name=f"dense_{k}")
    )
layers.append(keras.layers.Dense(1, kernel_initializer=init, name="out"))
model = keras.Sequential(layers, name="deep_tabular")
model.compile(keras.optimizers.Adam(1e-3), "mse")
history = model.fit(dataset, epochs=1, verbose=0)
print("final loss:", history.history["loss"][-1])
