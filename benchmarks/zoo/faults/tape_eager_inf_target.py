"""Hand-written eager GradientTape loop; a derived target divides by zero visits.

User story: the target is revenue per visit, `revenue / visits`, computed in numpy. Row 412 had
0 visits and some refunded revenue, so its target is -inf. The user wrote their own training
loop (eager, no `tf.function`), shuffling with a numpy permutation each epoch.

Fault: one non-finite target, hand-written eager loop.
Counterfactual checked: `revenue / np.maximum(visits, 1)` trains finite.
"""

EXPECTED = {
    "root_cause": "target_nonfinite",
    "layer": None,
    "op": None,
    "dataset_indices": [412],
    "step": 11,
}

import keras
import numpy as np
import tensorflow as tf

keras.utils.set_random_seed(7)
rng = np.random.default_rng(7)

n = 800
x = rng.normal(size=(n, 6)).astype("float32")
visits = rng.integers(5, 50, n).astype("float32")
revenue = visits * (2.0 + x[:, 0] + 0.1 * rng.normal(size=n))
visits[412], revenue[412] = 0.0, -3.5  # a refund on a day without visits
with np.errstate(divide="ignore"):
    target = (revenue / visits).astype("float32")[:, None]

model = keras.Sequential(
    [
        keras.Input((6,)),
        keras.layers.Dense(24, activation="tanh", name="hidden"),
        keras.layers.Dense(1, name="revenue_per_visit"),
    ],
    name="rpv",
)
optimizer = keras.optimizers.Adam(1e-2)
loss_fn = keras.losses.MeanSquaredError()

loss = None
for _epoch in range(2):
    order = rng.permutation(n)
    for start in range(0, n, 32):
        idx = order[start : start + 32]
        with tf.GradientTape() as tape:
            loss = loss_fn(target[idx], model(x[idx], training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=False))
print("final loss:", float(loss))
