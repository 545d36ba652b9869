"""Five-class classifier whose output layer uses relu instead of softmax.

User story: the user copied `activation="relu"` onto the last layer too. With
`categorical_crossentropy` (probabilities expected), Keras normalizes each row by its sum; a row
whose five relu outputs are all 0 gives 0/0 = NaN in the loss (seed article: relu output into
cross-entropy). One-hot targets, unshuffled.

Fault: output activation incompatible with the loss.
Counterfactual checked: `activation="softmax"` trains finite.
"""

EXPECTED = {
    "root_cause": "output_loss_mismatch",
    "layer": None,
    "op": "RealDiv",
    "dataset_indices": None,
    "step": 0,
}

import keras
import numpy as np

keras.utils.set_random_seed(19)
rng = np.random.default_rng(19)

n = 1500
x = rng.normal(size=(n, 10)).astype("float32")
classes = np.argmax(x[:, :5] + 0.5 * rng.normal(size=(n, 5)), axis=1)
y = keras.utils.to_categorical(classes, 5)

model = keras.Sequential(
    [
        keras.Input((10,)),
        keras.layers.Dense(32, activation="relu", name="hidden"),
        keras.layers.Dense(5, activation="relu", name="classes"),
    ],
    name="relu_head",
)
model.compile(keras.optimizers.Adam(1e-3), "categorical_crossentropy")
history = model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
print("final loss:", history.history["loss"][-1])
