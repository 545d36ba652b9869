"""Five-class shape classifier on 16x16 RGB images under `mixed_float16`: Conv2D + BatchNorm in
float16, the softmax in float32 (`Activation(..., dtype="float32")`), Adam with a `CosineDecay`
schedule that warms up to 3e-3, `steps_per_execution=4`, `fit(shuffle=True)`.

Healthy: mixed precision done the documented way (Keras wraps the optimizer in a
`LossScaleOptimizer`, which skips the steps whose scaled gradients overflow while it lowers the
scale); the loss stays finite.
"""

EXPECTED = {"healthy": True}

import keras
import numpy as np

keras.utils.set_random_seed(51)
rng = np.random.default_rng(51)
keras.mixed_precision.set_global_policy("mixed_float16")

N, S, CLASSES = 768, 16, 5
labels = rng.integers(0, CLASSES, size=N).astype("int32")
yy, xx = np.mgrid[0:S, 0:S]
images = rng.integers(0, 60, size=(N, S, S, 3)).astype("float32")
for i in range(N):
    cy, cx = rng.integers(5, 11, size=2)
    r = 1 + labels[i]
    disk = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
    images[i, disk, labels[i] % 3] = 255.0
images /= 255.0

model = keras.Sequential(
    [
        keras.Input((S, S, 3)),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_1"),
        keras.layers.BatchNormalization(name="bn_1"),
        keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv_2"),
        keras.layers.BatchNormalization(name="bn_2"),
        keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv_3"),
        keras.layers.GlobalAveragePooling2D(name="gap"),
        keras.layers.Dense(CLASSES, name="logits"),
        keras.layers.Activation("softmax", dtype="float32", name="probs"),  # softmax in float32
    ]
)
schedule = keras.optimizers.schedules.CosineDecay(
    initial_learning_rate=1e-4, decay_steps=200, warmup_target=3e-3, warmup_steps=40
)
model.compile(
    optimizer=keras.optimizers.Adam(schedule),
    loss="sparse_categorical_crossentropy",
    steps_per_execution=4,
)
history = model.fit(images, labels, batch_size=32, epochs=3, shuffle=True, verbose=2)
print("final loss:", history.history["loss"][-1])
