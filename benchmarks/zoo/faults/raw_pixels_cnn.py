"""Small CNN regressing a brightness score from raw 0-255 pixels.

User story: images are uint8 converted to float32 but never divided by 255 (the seed article:
"scaling pixel values to [0, 1] is critical"). The target, a cover fraction, is in [0, 1]. SGD
with momentum at 0.01, which trains this model on [0, 1] pixels, diverges on raw pixels.

Fault: inputs far from unit scale, CNN.
Counterfactual checked: `images / 255.0` trains finite at the same learning rate.
"""

EXPECTED = {
    "root_cause": "unscaled_input",
    "layer": "cover",
    "op": None,
    "dataset_indices": None,
    "step": 2,
}

import keras
import numpy as np

keras.utils.set_random_seed(17)
rng = np.random.default_rng(17)

n = 1024
cover = rng.random(n).astype("float32")
images = rng.integers(0, 256, (n, 12, 12, 1)).astype("float32")
mask = rng.random((n, 12, 12, 1)) < cover[:, None, None, None]
images[mask] = 255.0  # covered pixels are saturated

model = keras.Sequential(
    [
        keras.Input((12, 12, 1)),
        keras.layers.Conv2D(8, 3, activation="leaky_relu", name="conv_1"),
        keras.layers.Conv2D(8, 3, strides=2, activation="leaky_relu", name="conv_2"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(1, name="cover"),
    ],
    name="cover_cnn",
)
model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "mse")
history = model.fit(images, cover, batch_size=32, epochs=1, verbose=0)
print("final loss:", history.history["loss"][-1])
