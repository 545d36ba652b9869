"""Next-week unit sales from 26 weeks of history: a subclassed `keras.Model` overriding
`train_step` with a Bidirectional LSTM encoder, outputs scaled by 10,000 and a plain squared
error in raw units, so the loss starts at 6.6e8 and ends in the millions. Adam at a brisk 1e-2
with `clipnorm=1.0`.

Healthy: huge but finite losses; the inputs are scaled (tens of thousands of units -> ~1),
Adam's normalized steps and the clipping keep the updates small, and nothing goes non-finite.
"""

EXPECTED = {"healthy": True}

import keras
import numpy as np
import tensorflow as tf

keras.utils.set_random_seed(53)
rng = np.random.default_rng(53)

N, WEEKS = 1024, 26
base = rng.uniform(5_000, 40_000, size=(N, 1))
season = 1 + 0.2 * np.sin(2 * np.pi * (np.arange(WEEKS + 1) + rng.integers(0, 52, (N, 1))) / 52)
units = base * season * rng.lognormal(0, 0.05, size=(N, WEEKS + 1))
history_units = (units[:, :WEEKS, None] / 10_000).astype("float32")  # inputs in 10k units
next_week_units = units[:, WEEKS:].astype("float32")  # target in raw units, ~1e4


class SalesForecaster(keras.Model):
    def __init__(self):
        super().__init__()
        self.encoder = keras.layers.Bidirectional(keras.layers.LSTM(32), name="encoder")
        self.head = keras.layers.Dense(1, name="head")
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def call(self, x, training=False):
        return 10_000.0 * self.head(self.encoder(x, training=training))

    @property
    def metrics(self):
        return [self.loss_tracker]

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            pred = self(x, training=True)
            loss = tf.reduce_mean(tf.square(pred - y))  # squared units: ~1e8 and more
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables, strict=True))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}


model = SalesForecaster()
model.compile(optimizer=keras.optimizers.Adam(1e-2, clipnorm=1.0))
history = model.fit(history_units, next_week_units, batch_size=32, epochs=4, verbose=2)
print("final loss:", history.history["loss"][-1])
