"""Knowledge distillation with a hand-written KL divergence; hard targets contain exact zeros.

User story: a small student learns from targets mixing a teacher's soft probabilities and, for
part of the data, plain one-hot labels. The KL term is written by hand as
`sum(t * log(t / p))`. For a one-hot row, `t = 0` gives `0 * log(0)` = `0 * -inf` = NaN, so the
first batch holding a one-hot row has a NaN loss. The targets are valid distributions; the
formula is what breaks (KL's convention is 0 log 0 = 0). Functional model, `fit`, unshuffled.

Fault: the loss computes 0 * log(0).
Counterfactual checked: `keras.losses.KLDivergence()` (which clips) trains finite.
"""

EXPECTED = {
    "root_cause": "unstable_loss",
    "layer": None,
    "op": "Log",
    "dataset_indices": None,
    "step": 0,
}

import keras
import numpy as np
from keras import ops

keras.utils.set_random_seed(23)
rng = np.random.default_rng(23)

n, k = 1200, 4
x = rng.normal(size=(n, 12)).astype("float32")
logits = x[:, :k] * 2.0
teacher = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
hard = rng.random(n) < 0.2
teacher[hard] = np.eye(k)[np.argmax(logits[hard], axis=1)]  # one-hot rows
teacher = teacher.astype("float32")


def kl_by_hand(t, p):
    return ops.sum(t * ops.log(t / p), axis=-1)


inputs = keras.Input((12,))
h = keras.layers.Dense(32, activation="relu", name="hidden")(inputs)
out = keras.layers.Dense(k, activation="softmax", name="student")(h)
model = keras.Model(inputs, out, name="student")
model.compile(keras.optimizers.Adam(1e-3), kl_by_hand)
history = model.fit(x, teacher, batch_size=32, epochs=1, shuffle=False, verbose=0)
print("final loss:", history.history["loss"][-1])
