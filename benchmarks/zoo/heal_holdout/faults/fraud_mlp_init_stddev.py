"""Transaction-risk classifier whose dense kernels were initialized with stddev 4.

User story: a payments analyst classifies transactions into 3 risk tiers from 20 standardized
features with a deep Sequential MLP (8 relu layers of 128 units). A colleague's config set
`kernel_initializer=RandomNormal(stddev=4.0)` ("weights should be about the size of the inputs")
on every hidden layer; the right scale for 128 fan-in is about 0.125 (He: sqrt(2/fan_in)). Each
layer multiplies the activation scale by ~30, so the logits start around 1e12; the
cross-entropy gradients backpropagated through the same gains are astronomically large, and the
first SGD updates push the weights to inf/NaN. Trained with SGD on numpy arrays for 4 epochs.

Fault: kernels initialized at a wildly wrong scale (CONTRACT: bad_initialization).
Counterfactual checked: the same model with the default (Glorot uniform) initializer trains finite
with the same optimizer.
"""

EXPECTED = {
    "root_cause": "bad_initialization",
    "layer": None,
    "op": None,
    "dataset_indices": None,
    "step": 1,
}

import keras
import numpy as np

keras.utils.set_random_seed(17)
rng = np.random.default_rng(17)

n = 2048
x = rng.normal(size=(n, 20)).astype("float32")
score = 1.2 * x[:, 0] - 0.8 * x[:, 4] + 0.5 * x[:, 9] * x[:, 1] + rng.normal(0, 0.3, n)
tier = np.digitize(score, np.quantile(score, [0.6, 0.9])).astype("int32")

layers = [keras.Input((20,))]
for i in range(8):
    layers.append(
        keras.layers.Dense(
            128,
            activation="relu",
            kernel_initializer=keras.initializers.RandomNormal(stddev=4.0),
            name=f"hidden_{i}",
        )
    )
layers.append(keras.layers.Dense(3, activation="softmax", name="tier"))
model = keras.Sequential(layers, name="risk_tiers")

model.compile(
    keras.optimizers.SGD(0.01),
    "sparse_categorical_crossentropy",
    metrics=["accuracy"],
)
history = model.fit(x, tier, batch_size=64, epochs=4, verbose=0)
print("final loss:", history.history["loss"][-1])
