"""Semi-supervised `tf.function` loop with a hand-written entropy-minimization term.

User story: 256 labelled and 2048 unlabelled rows of a 3-class tabular problem. The user's own
`tf.function` step adds an entropy penalty on the unlabelled batch, written out by hand as
`-sum(p * log(p))` with `p = softmax(logits)`. Entropy minimization pushes the logits of each
unlabelled row apart; once a class probability underflows to exactly 0 in float32,
`0 * log(0) = 0 * -inf = NaN` and the loss is NaN. Every layer output stays finite.

Fault: the loss function itself computes 0 * log(0).
Counterfactual checked: `ops.sum(p * ops.log_softmax(logits), -1)` trains finite.
"""

EXPECTED = {
    "root_cause": "unstable_loss",
    "layer": None,
    "op": "Log",
    "dataset_indices": None,
    "step": 18,
}

import keras
import numpy as np
import tensorflow as tf
from keras import ops

keras.utils.set_random_seed(909)
rng = np.random.default_rng(909)

centers = rng.normal(size=(3, 10)) * 2.0
labels = rng.integers(0, 3, size=256)
x_lab = (centers[labels] + rng.normal(size=(256, 10))).astype("float32")
x_unl = (centers[rng.integers(0, 3, size=2048)] + rng.normal(size=(2048, 10))).astype("float32")
y_lab = labels.astype("int32")

model = keras.Sequential(
    [
        keras.Input((10,)),
        keras.layers.Dense(64, activation="relu", name="hidden_a"),
        keras.layers.Dense(64, activation="relu", name="hidden_b"),
        keras.layers.Dense(3, name="logits"),
    ],
    name="semi_supervised",
)
optimizer = keras.optimizers.Adam(0.02)
ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@tf.function
def train_step(xl, yl, xu):
    with tf.GradientTape() as tape:
        supervised = ce(yl, model(xl, training=True))
        p = ops.softmax(model(xu, training=True), axis=-1)
        entropy = -ops.mean(ops.sum(p * ops.log(p), axis=-1))
        loss = supervised + entropy
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=False))
    return loss


loss = None
for _ in range(4):
    for i in range(16):
        lab = slice((i % 8) * 32, (i % 8) * 32 + 32)
        loss = train_step(x_lab[lab], y_lab[lab], x_unl[i * 128 : i * 128 + 128])
print("final loss:", float(loss))
