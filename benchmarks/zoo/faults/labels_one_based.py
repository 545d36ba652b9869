"""Ten-class classifier whose labels were exported 1..10 instead of 0..9.

User story: the labels come from a spreadsheet where classes are numbered from 1. The model has
10 softmax units and `sparse_categorical_crossentropy`, so every row of class "10" is out of
range. On CPU TensorFlow raises at the first batch that holds one (on GPU the loss is NaN
instead). Unshuffled, batch 32.

Fault: labels outside [0, num_classes), many rows.
Counterfactual checked: `labels - 1` trains finite.
"""

EXPECTED = {
    "root_cause": "label_out_of_range",
    "layer": None,
    "op": None,
    "dataset_indices": [18, 21, 22, 30],
    "step": 0,
}

import keras
import numpy as np

keras.utils.set_random_seed(8)
rng = np.random.default_rng(8)

n = 2000
centers = rng.normal(0, 2.0, (10, 12))
labels = rng.integers(1, 11, n)  # 1-based class ids
x = (centers[labels - 1] + rng.normal(size=(n, 12))).astype("float32")

model = keras.Sequential(
    [
        keras.Input((12,)),
        keras.layers.Dense(48, activation="relu", name="hidden"),
        keras.layers.Dense(10, activation="softmax", name="classes"),
    ],
    name="ten_classes",
)
model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(x, labels, batch_size=32, epochs=1, shuffle=False, verbose=0)
print("final loss:", history.history["loss"][-1])
