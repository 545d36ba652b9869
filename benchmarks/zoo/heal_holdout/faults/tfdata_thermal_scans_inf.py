"""Defect classification on thermal camera patches fed through tf.data, two scans hold +inf.

User story: a quality-control engineer classifies 16x16 thermal patches of circuit boards into 4
defect classes. Patches are converted to relative temperature (roughly unit scale) upstream. Two
patches (rows 905 and 1432) came from a camera whose firmware writes +inf for saturated pixels, so
a 3x3 hot spot in each is +inf. The data goes through a shuffled `tf.data` pipeline built from
the arrays into a small Functional CNN trained with RMSprop for 5 epochs. The first batch with
one of those patches gives an infinite/NaN loss and RMSprop turns the weights NaN.

Fault: +inf pixels in records 905 and 1432 of the image array (CONTRACT: input_nonfinite).
Counterfactual checked: dropping the two records (`np.isfinite(images).all(axis=(1, 2, 3))`)
trains finite with the same pipeline and optimizer.
"""

EXPECTED = {
    "root_cause": "input_nonfinite",
    "layer": None,
    "op": None,
    "dataset_indices": [905, 1432],
    "step": 3,
}

import keras
import numpy as np
import tensorflow as tf

keras.utils.set_random_seed(7)
rng = np.random.default_rng(7)

n, classes = 1600, 4
labels = rng.integers(0, classes, n).astype("int32")
images = rng.normal(0, 0.3, size=(n, 16, 16, 1)).astype("float32")
for k in range(classes):  # each defect class heats a different quadrant
    rows = labels == k
    r, c = divmod(k, 2)
    images[rows, r * 8 : r * 8 + 8, c * 8 : c * 8 + 8, 0] += 1.0
images[905, 4:7, 4:7, 0] = np.inf  # saturated pixels from the bad camera
images[1432, 10:13, 2:5, 0] = np.inf

dataset = (
    tf.data.Dataset.from_tensor_slices((images, labels))
    .shuffle(n, seed=11)
    .batch(32)
    .prefetch(tf.data.AUTOTUNE)
)

inputs = keras.Input((16, 16, 1), name="patch")
h = keras.layers.Conv2D(16, 3, padding="same", activation="elu", name="conv_1")(inputs)
h = keras.layers.MaxPooling2D(name="pool_1")(h)
h = keras.layers.Conv2D(32, 3, padding="same", activation="elu", name="conv_2")(h)
h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
outputs = keras.layers.Dense(classes, activation="softmax", name="defect")(h)
model = keras.Model(inputs, outputs, name="thermal_qc")

model.compile(
    keras.optimizers.RMSprop(1e-3),
    "sparse_categorical_crossentropy",
    metrics=["accuracy"],
)
history = model.fit(dataset, epochs=5, verbose=0)
print("final loss:", history.history["loss"][-1])
