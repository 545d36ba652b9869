"""A small image classifier that trained fine on 100 images goes NaN on the full 9000.

User story: the prototype used 100 hand-picked images; the full export has 9000, and one of them
(row 4821) was truncated on disk, so the decoder filled a patch of it with NaN. Nothing else
changed: pixels are in [0, 1], Adam at its default rate, `fit` shuffles as usual.

Fault: one non-finite input record among 9000 (seed article: "100 to 9000 images").
Counterfactual checked: dropping row 4821 (`x = np.delete(x, 4821, 0)`) trains finite.
"""

EXPECTED = {
    "root_cause": "input_nonfinite",
    "layer": None,
    "op": None,
    "dataset_indices": [4821],
    "step": 72,
}

import keras
import numpy as np

keras.utils.set_random_seed(1)
rng = np.random.default_rng(1)

n = 9000
labels = rng.integers(0, 3, n)
images = rng.random((n, 12, 12, 1), dtype=np.float32) * 0.6
images[labels == 1, :6] += 0.4  # class 1: bright top half
images[labels == 2, :, :6] += 0.4  # class 2: bright left half
images[4821, 4:8, 4:8, 0] = np.nan  # truncated file, decoded patch is NaN

model = keras.Sequential(
    [
        keras.Input((12, 12, 1)),
        keras.layers.Conv2D(8, 3, activation="relu", name="conv_a"),
        keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv_b"),
        keras.layers.GlobalAveragePooling2D(name="gap"),
        keras.layers.Dense(3, activation="softmax", name="classes"),
    ],
    name="image_classifier",
)
model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(images, labels, batch_size=64, epochs=1, verbose=0)
print("final loss:", history.history["loss"][-1])
