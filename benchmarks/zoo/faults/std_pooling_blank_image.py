"""CNN with a hand-written standard-deviation pooling; one image is completely blank.

User story: texture images are summarized by a custom `StdPool` layer,
`sqrt(mean((x - mean(x))^2))` over the spatial positions, after a bias-free conv. Image 350 is a
blank frame (all zeros): its feature maps are constant, the variance is exactly 0, the forward
value 0 is finite, but sqrt's gradient at 0 is inf and the backward pass gives NaN. `fit`
shuffles.

Fault: finite forward, non-finite backward pass through sqrt at 0, triggered by one sample.
Counterfactual checked: `sqrt(var + 1e-6)` trains finite.
"""

EXPECTED = {
    "root_cause": "unstable_gradient",
    "layer": "std_pool",
    "op": "Sqrt",
    "dataset_indices": [350],
    "step": 8,
}

import keras
import numpy as np
from keras import ops

keras.utils.set_random_seed(30)
rng = np.random.default_rng(30)


class StdPool(keras.layers.Layer):
    def call(self, x):
        mean = ops.mean(x, axis=(1, 2), keepdims=True)
        return ops.sqrt(ops.mean(ops.square(x - mean), axis=(1, 2)))


n = 800
rough = rng.integers(0, 2, n).astype("float32")
images = rng.random((n, 10, 10, 1)).astype("float32") * (0.2 + 0.6 * rough[:, None, None, None])
images[350] = 0.0  # blank frame

model = keras.Sequential(
    [
        keras.Input((10, 10, 1)),
        keras.layers.Conv2D(8, 3, use_bias=False, name="conv"),
        StdPool(name="std_pool"),
        keras.layers.Dense(1, activation="sigmoid", name="rough"),
    ],
    name="texture",
)
model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
history = model.fit(images, rough, batch_size=32, epochs=1, verbose=0)
print("final loss:", history.history["loss"][-1])
