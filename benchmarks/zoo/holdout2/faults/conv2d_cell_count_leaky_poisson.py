"""Cell counting in 32x32 microscope crops (Poisson counts, mean 1.2, many empty crops): a Conv2D
regressor trained with `loss="poisson"`. The rate head starts at the mean count through its bias,
and its output goes through `LeakyReLU(0.1)` "so it cannot die like a ReLU".

Planted fault: LeakyReLU lets the predicted rate go below zero, and Keras' Poisson loss takes
log(y_pred + 1e-7). Training pushes the rates of low-count crops down; at step 72 (epoch 2,
batch 8) seven rates in the batch are slightly negative (down to -0.0046) and the loss is NaN.
The gradients stay finite (d/dp of p - y log p is finite for p < 0), only the loss value is NaN.

Counterfactual (run, trains finite): `Activation("softplus")` as the output instead of LeakyReLU.
Measured: step 72 in graph mode and in an eager replay; every layer output is finite (max 3.2),
the NaN appears in the loss.
"""

EXPECTED = {
    "root_cause": "output_loss_mismatch",
    "layer": None,
    "op": "Log",
    "dataset_indices": None,
    "step": 72,
}

import keras
import numpy as np

keras.utils.set_random_seed(17)
rng = np.random.default_rng(17)

N, S = 1024, 32
yy, xx = np.mgrid[0:S, 0:S]
counts = rng.poisson(1.2, size=N)
images = rng.normal(0.1, 0.03, size=(N, S, S, 1)).astype("float32")
for i in range(N):
    for _ in range(counts[i]):
        cy, cx = rng.uniform(3, S - 3, size=2)
        images[i, :, :, 0] += 0.8 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 4.0)
counts = counts.astype("float32")

model = keras.Sequential(
    [
        keras.Input((S, S, 1)),
        keras.layers.Conv2D(8, 3, activation="relu", name="conv_1"),
        keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv_2"),
        keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv_3"),
        keras.layers.GlobalAveragePooling2D(name="gap"),
        keras.layers.Dense(16, activation="relu", name="dense"),
        # Start at the mean count; LeakyReLU so the head cannot die like a ReLU would.
        keras.layers.Dense(1, bias_initializer=keras.initializers.Constant(1.2), name="rate"),
        keras.layers.LeakyReLU(negative_slope=0.1, name="count"),
    ]
)
model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="poisson")
history = model.fit(images, counts, batch_size=32, epochs=5, verbose=2)
print("final loss:", history.history["loss"][-1])
