"""Small CNN with BatchNormalization and Dropout, images in [0, 1], Adam.

Healthy: the usual image-classification recipe.
"""

EXPECTED = {"healthy": True}

import keras
import numpy as np

keras.utils.set_random_seed(105)
rng = np.random.default_rng(105)

n = 1024
labels = rng.integers(0, 4, n)
images = rng.random((n, 12, 12, 1)).astype("float32") * 0.5
for k in range(4):
    rows, cols = divmod(k, 2)
    images[labels == k, rows * 6 : rows * 6 + 6, cols * 6 : cols * 6 + 6] += 0.5

model = keras.Sequential(
    [
        keras.Input((12, 12, 1)),
        keras.layers.Conv2D(8, 3, use_bias=False, name="conv_1"),
        keras.layers.BatchNormalization(name="bn_1"),
        keras.layers.Activation("relu", name="relu_1"),
        keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv_2"),
        keras.layers.GlobalAveragePooling2D(name="gap"),
        keras.layers.Dropout(0.3, name="dropout"),
        keras.layers.Dense(4, activation="softmax", name="classes"),
    ],
    name="bn_cnn",
)
model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(images, labels, batch_size=32, epochs=2, verbose=0)
print("final loss:", history.history["loss"][-1])
