"""Eager GradientTape loop; a hand-written log-sum-exp pooling layer overflows exp().

User story: a subclassed Conv1D model detects machine faults in 120-step sensor traces. To get a
"soft max-pooling" over time the user wrote a custom `SoftMaxPool` layer,
`log(sum(exp(r * x), axis=1)) / r` with sharpness r = 30, without subtracting the max first.
As soon as any relu feature passes 88.7 / 30 = 2.96, exp() overflows to inf in float32 and the
pooled value is inf. Eager loop (no `tf.function`), unshuffled, batch 32.

Fault: a layer's forward computation overflows (exp without the max-subtraction trick).
Counterfactual checked: `ops.logsumexp(r * x, axis=1) / r` trains finite.
"""

EXPECTED = {
    "root_cause": "unstable_op",
    "layer": "soft_max_pool",
    "op": "Exp",
    "dataset_indices": None,
    "step": 10,
}

import keras
import numpy as np
import tensorflow as tf
from keras import ops

keras.utils.set_random_seed(111)
rng = np.random.default_rng(111)


class SoftMaxPool(keras.layers.Layer):
    def __init__(self, sharpness=30.0, **kwargs):
        super().__init__(**kwargs)
        self.sharpness = sharpness

    def call(self, x):
        return ops.log(ops.sum(ops.exp(self.sharpness * x), axis=1)) / self.sharpness


class FaultDetector(keras.Model):
    def __init__(self):
        super().__init__(name="fault_detector")
        self.conv = keras.layers.Conv1D(16, 5, activation="relu", name="conv")
        self.pool = SoftMaxPool(name="soft_max_pool")
        self.head = keras.layers.Dense(1, name="fault_logit")

    def call(self, x):
        return self.head(self.pool(self.conv(x)))


n, t = 480, 120
faulty = (rng.random(n) < 0.3).astype("float32")
traces = rng.normal(size=(n, t, 3)).astype("float32")
traces[faulty > 0, 60:70, :] += 1.5

model = FaultDetector()
optimizer = keras.optimizers.Adam(1e-3)
loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)
loss = None
for start in range(0, n, 32):
    xb, yb = traces[start : start + 32], faulty[start : start + 32, None]
    with tf.GradientTape() as tape:
        loss = loss_fn(yb, model(xb, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=False))
print("final loss:", float(loss))
