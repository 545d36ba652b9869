"""Healthy: subclassed Conv1D model with a custom log-energy layer written safely, tf.data shuffled.

The custom layer computes `log1p(mean(square(x)))` (finite for silent clips too) and one clip in
the data is exact digital silence. Inputs are unit scale, BCE on a sigmoid output.
"""

EXPECTED = {"healthy": True}

import keras
import numpy as np
import tensorflow as tf
from keras import ops

keras.utils.set_random_seed(1202)
rng = np.random.default_rng(1202)


class LogEnergy(keras.layers.Layer):
    def call(self, x):
        return ops.log1p(ops.mean(ops.square(x), axis=1))


class Detector(keras.Model):
    def __init__(self):
        super().__init__(name="detector")
        self.conv = keras.layers.Conv1D(8, 7, activation="relu", name="conv")
        self.energy = LogEnergy(name="log_energy")
        self.head = keras.layers.Dense(1, activation="sigmoid", name="event")

    def call(self, x):
        return self.head(self.energy(self.conv(x)))


n, t = 768, 80
event = (rng.random(n) < 0.5).astype("float32")
clips = rng.normal(size=(n, t, 1)) * (0.5 + event[:, None, None])
clips = clips.astype("float32")
clips[100] = 0.0  # silence is fine here

dataset = tf.data.Dataset.from_tensor_slices((clips, event)).shuffle(n, seed=1202).batch(32)
model = Detector()
model.compile(keras.optimizers.Adam(3e-3), "binary_crossentropy")
history = model.fit(dataset, epochs=2, verbose=0)
print("final loss:", history.history["loss"][-1])
