"""Self-supervised session embeddings: a subclassed `keras.Model` overrides `train_step` to
compute an InfoNCE loss between two augmented views of each session, written out by hand:
exp(sim) / sum(exp(sim)) with a temperature of 0.3 and embeddings that are not normalized.

Planted fault: the hand-written softmax exponentiates raw logits. The dot products / 0.3 peak at
84 in steps 0-1 and at 104 in step 2, where exp overflows float32 to inf, inf / inf is NaN, and
the loss and gradients are NaN. The encoder's outputs stay small (max 2.2).

Counterfactual (run, trains finite): `tf.nn.sparse_softmax_cross_entropy_with_logits(labels=
tf.range(batch), logits=sim)` in place of the written-out softmax and log.
Measured: step 2 in graph mode and in an eager run (the Exp input is 103.9 there); both encoder
layers' outputs are finite, the overflow is in the loss.
"""

EXPECTED = {
    "root_cause": "unstable_loss",
    "layer": None,
    "op": "Exp",
    "dataset_indices": None,
    "step": 2,
}

import keras
import numpy as np
import tensorflow as tf

keras.utils.set_random_seed(30)
rng = np.random.default_rng(30)

N, D = 2048, 24
sessions = rng.normal(size=(N, D)).astype("float32")  # standardized session features


def augment(x):
    # two "views": random feature dropout plus jitter
    keep = rng.random(x.shape) > 0.2
    return (x * keep + rng.normal(0, 0.1, size=x.shape)).astype("float32")


view_a, view_b = augment(sessions), augment(sessions)
ds = tf.data.Dataset.from_tensor_slices((view_a, view_b)).batch(128)


class SessionEncoder(keras.Model):
    def __init__(self, temperature=0.3):
        super().__init__()
        self.temperature = temperature
        self.body = keras.layers.Dense(64, activation="relu", name="body")
        self.projection = keras.layers.Dense(32, name="projection")
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def call(self, x, training=False):
        return self.projection(self.body(x))

    @property
    def metrics(self):
        return [self.loss_tracker]

    def train_step(self, data):
        view_a, view_b = data
        with tf.GradientTape() as tape:
            za = self(view_a, training=True)
            zb = self(view_b, training=True)
            sim = tf.matmul(za, zb, transpose_b=True) / self.temperature
            # InfoNCE, written out: the matching view should win the softmax over the batch
            exp_sim = tf.exp(sim)
            p_match = tf.linalg.diag_part(exp_sim) / tf.reduce_sum(exp_sim, axis=1)
            loss = -tf.reduce_mean(tf.math.log(p_match))
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables, strict=True))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}


model = SessionEncoder()
model.compile(optimizer=keras.optimizers.Adam(1e-3))
history = model.fit(ds, epochs=3, verbose=2)
print("final loss:", history.history["loss"][-1])
