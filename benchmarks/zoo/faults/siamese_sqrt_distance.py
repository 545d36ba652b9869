"""Siamese network with a hand-written Euclidean distance; one negative pair is one item twice.

User story: a shared encoder (a nested Sequential model) embeds both items of a pair; a custom
`EuclideanDistance` layer computes `sqrt(sum((a - b)^2))` for a contrastive loss. Negative pairs
were drawn at random from the catalog, and pair 940 drew the same product twice (listed under two
SKUs) while labelled "different". Its distance is exactly 0: the forward value is finite, but the
contrastive margin term still pulls on it, and the gradient of sqrt at 0 is inf; times the zero
difference it gives NaN (seed: sqrt at 0). Unshuffled, batch 32.

Fault: finite forward, non-finite backward pass through sqrt at 0, triggered by one pair.
Counterfactual checked: `sqrt(sum(...) + 1e-12)` trains finite.
"""

EXPECTED = {
    "root_cause": "unstable_gradient",
    "layer": "distance",
    "op": "Sqrt",
    "dataset_indices": [940],
    "step": 29,
}

import keras
import numpy as np
from keras import ops

keras.utils.set_random_seed(28)
rng = np.random.default_rng(28)


class EuclideanDistance(keras.layers.Layer):
    def call(self, inputs):
        a, b = inputs
        return ops.sqrt(ops.sum(ops.square(a - b), axis=-1, keepdims=True))


def contrastive(same, dist, margin=1.0):
    return ops.mean(same * ops.square(dist) + (1 - same) * ops.square(ops.relu(margin - dist)))


n = 1600
left = rng.normal(size=(n, 10)).astype("float32")
same = (rng.random(n) < 0.5).astype("float32")
right = np.where(same[:, None] > 0, left + rng.normal(0, 0.3, (n, 10)), rng.normal(size=(n, 10)))
right = right.astype("float32")
right[940], same[940] = left[940], 0.0  # the same product, labelled different

encoder = keras.Sequential(
    [
        keras.Input((10,)),
        keras.layers.Dense(32, activation="relu", name="enc_hidden"),
        keras.layers.Dense(8, name="enc_out"),
    ],
    name="encoder",
)
a_in, b_in = keras.Input((10,), name="left"), keras.Input((10,), name="right")
dist = EuclideanDistance(name="distance")([encoder(a_in), encoder(b_in)])
model = keras.Model([a_in, b_in], dist, name="siamese")
model.compile(keras.optimizers.Adam(1e-3), contrastive)
history = model.fit([left, right], same, batch_size=32, epochs=1, shuffle=False, verbose=0)
print("final loss:", history.history["loss"][-1])
