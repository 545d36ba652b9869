"""Three-class classifier where 30% of the labels are flipped at random.

Healthy: the loss stays high (the noise floor) and noisy, but every value is finite.
"""

EXPECTED = {"healthy": True}

import keras
import numpy as np

keras.utils.set_random_seed(101)
rng = np.random.default_rng(101)

n = 2000
x = rng.normal(size=(n, 10)).astype("float32")
y = np.argmax(x[:, :3], axis=1)
flip = rng.random(n) < 0.3
y[flip] = rng.integers(0, 3, flip.sum())

model = keras.Sequential(
    [
        keras.Input((10,)),
        keras.layers.Dense(32, activation="relu", name="hidden"),
        keras.layers.Dense(3, activation="softmax", name="classes"),
    ],
    name="noisy_labels",
)
model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
history = model.fit(x, y, batch_size=32, epochs=2, verbose=0)
print("final loss:", history.history["loss"][-1])
