"""Surface-defect classifier for 24x24 grayscale camera frames (horizontal scratch, vertical
scratch, clean part). The frames come through a shuffled `tf.data` pipeline whose `.map` stretches
each frame to [0, 1] with its own min and max, then a small ELU Conv2D network trained with `fit`.

Planted fault: frame 941 is saturated white (an auto-exposure glitch), so its max equals its min
and `to_unit_range` computes (255 - 255) / (255 - 255) = 0/0: the frame reaches the model as NaN.
The seeded shuffle puts row 941 in batch 28 of the first epoch; that step's loss and every
gradient are NaN, and the weights are NaN after it.

Counterfactual (run, trains finite): divide by `tf.maximum(hi - lo, 1.0)` instead of `hi - lo`.
Measured: step 28 in graph mode, again in an eager replay, and from the pipeline's order (row 941
is in batch 28 of the first iteration). Every layer's input in that batch already holds the NaN,
so no layer qualifies.
"""

EXPECTED = {
    "root_cause": "input_nonfinite",
    "layer": None,
    "op": None,
    "dataset_indices": [941],
    "step": 28,
}

import keras
import numpy as np
import tensorflow as tf

keras.utils.set_random_seed(3)
rng = np.random.default_rng(3)

N, H, W = 1280, 24, 24
labels = rng.integers(0, 3, size=N).astype("int32")
yy, xx = np.mgrid[0:H, 0:W]
frames = rng.integers(90, 200, size=(N, H, W, 1)).astype("uint8")
for i in range(N):
    # class 0: horizontal scratch, class 1: vertical scratch, class 2: clean part
    if labels[i] == 0:
        r = rng.integers(2, H - 3)
        frames[i, r : r + 2, :, 0] = 10
    elif labels[i] == 1:
        c = rng.integers(2, W - 3)
        frames[i, :, c : c + 2, 0] = 10
frames[941] = 255  # the camera's auto-exposure glitched: one frame is saturated white


def to_unit_range(frame, label):
    frame = tf.cast(frame, tf.float32)
    lo = tf.reduce_min(frame)
    hi = tf.reduce_max(frame)
    return (frame - lo) / (hi - lo), label


ds = (
    tf.data.Dataset.from_tensor_slices((frames, labels))
    .shuffle(N, seed=11)
    .map(to_unit_range, num_parallel_calls=tf.data.AUTOTUNE)
    .batch(32)
    .prefetch(2)
)

model = keras.Sequential(
    [
        keras.Input((H, W, 1)),
        keras.layers.Conv2D(8, 3, strides=2, activation="elu", name="conv_a"),
        keras.layers.Conv2D(16, 3, activation="elu", name="conv_b"),
        keras.layers.GlobalAveragePooling2D(name="gap"),
        keras.layers.Dense(3, name="defect_logits"),
    ]
)
model.compile(
    optimizer=keras.optimizers.Adam(3e-3),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
)
history = model.fit(ds, epochs=2, verbose=2)
print("final loss:", history.history["loss"][-1])
