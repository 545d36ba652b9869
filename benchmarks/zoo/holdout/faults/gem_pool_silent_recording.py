"""Audio-event detector with a hand-written GeM (generalized-mean) pooling; one clip is silent.

User story: a Conv1D (no bias) + relu front end feeds a custom `GeMPool` layer,
`mean(x ** 3) ** (1/3)`, copied from an image-retrieval paper, then a sigmoid head. Clip 410 is
pure digital silence (all zeros, a muted microphone). Its relu features are exactly 0, so the
pooled value is 0 ** (1/3) = 0: the forward pass is finite, but the derivative of x ** (1/3) at
0 is inf, which times the zero features gives NaN gradients. Arrays, `shuffle=False`, batch 32.

Fault: finite forward, non-finite backward pass of the GeM layer (Pow at 0), one sample.
Counterfactual checked: `ops.power(mean + 1e-6, 1/3)` trains finite.
"""

EXPECTED = {
    "root_cause": "unstable_gradient",
    "layer": "gem_pool",
    "op": "Pow",
    "dataset_indices": [410],
    "step": 12,
}

import keras
import numpy as np
from keras import ops

keras.utils.set_random_seed(808)
rng = np.random.default_rng(808)


class GeMPool(keras.layers.Layer):
    def call(self, x):
        return ops.power(ops.mean(ops.power(x, 3.0), axis=1), 1.0 / 3.0)


n, t = 800, 96
event = (rng.random(n) < 0.4).astype("float32")
clips = rng.normal(size=(n, t, 1)) * 0.3
clips[event > 0, 40:56, 0] += 2.0 * np.sin(np.arange(16) / 2.0)
clips = clips.astype("float32")
clips[410] = 0.0  # muted microphone

model = keras.Sequential(
    [
        keras.Input((t, 1)),
        keras.layers.Conv1D(12, 9, activation="relu", use_bias=False, name="frontend"),
        GeMPool(name="gem_pool"),
        keras.layers.Dense(1, activation="sigmoid", name="event"),
    ],
    name="event_detector",
)
model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
history = model.fit(clips, event, batch_size=32, epochs=1, shuffle=False, verbose=0)
print("final loss:", history.history["loss"][-1])
