"""Subclassed Conv1D keyword-spotting regressor fed raw 16-bit ADC counts through tf.data.

User story: a subclassed model with a Conv1D front end estimates loudness (in dB, ~0..1 after the
user's own scaling of the target) from 200-sample audio frames. The frames are fed as the raw
int16 counts the sound card delivered (values up to +-32767, cast to float32), never divided by
32768. tf.data built from the arrays, shuffled with a fixed seed, batch 32, plain SGD(0.01). The
first updates are ~1e4 times too large and the loss diverges within a few steps: at step 2
the (finite, huge) weights make the `db` head's output overflow.

Fault: inputs far from unit scale drive the blow-up (the whole input, not a few samples).
Counterfactual checked: `frames / 32768.0` trains finite.
"""

EXPECTED = {
    "root_cause": "unscaled_input",
    "layer": "db",
    "op": None,
    "dataset_indices": None,
    "step": 2,
}

import keras
import numpy as np
import tensorflow as tf

keras.utils.set_random_seed(606)
rng = np.random.default_rng(606)

n, t = 1024, 200
level = rng.uniform(0.05, 1.0, size=n).astype("float32")
frames = np.round(rng.normal(size=(n, t)) * level[:, None] * 12000.0).clip(-32767, 32767)
frames = frames.astype("float32")[..., None]  # raw ADC counts
loudness = level.reshape(-1, 1)

dataset = tf.data.Dataset.from_tensor_slices((frames, loudness))
dataset = dataset.shuffle(n, seed=606).batch(32)


class Loudness(keras.Model):
    def __init__(self):
        super().__init__(name="loudness")
        self.conv = keras.layers.Conv1D(8, 9, strides=2, activation="relu", name="frontend")
        self.pool = keras.layers.GlobalAveragePooling1D(name="pool")
        self.head = keras.layers.Dense(1, name="db")

    def call(self, inputs):
        return self.head(self.pool(self.conv(inputs)))


model = Loudness()
model.compile(keras.optimizers.SGD(0.01), "mse")
history = model.fit(dataset, epochs=2, verbose=0)
print("final loss:", history.history["loss"][-1])
