"""CNN regression with a warmup schedule whose peak learning rate is far too high.

User story: a cosine schedule with linear warmup (`CosineDecay(warmup_target=...)`) was copied
from a large-batch recipe; here it warms SGD (momentum 0.9) up to 3.0 over 60 steps. Inputs are in
[0, 1], the target is a unit-scale fraction. Training is fine while the rate is small and
diverges once the warmup passes the stable range.

Fault: learning rate too high (reached by the schedule).
Counterfactual checked: `warmup_target=0.3` (peak/10) trains finite.
"""

EXPECTED = {
    "root_cause": "learning_rate_too_high",
    "layer": None,
    "op": None,
    "dataset_indices": None,
    "step": 27,
}

import keras
import numpy as np

keras.utils.set_random_seed(33)
rng = np.random.default_rng(33)

n = 1536
fraction = rng.random(n).astype("float32")
images = (rng.random((n, 12, 12, 1)) < fraction[:, None, None, None]).astype("float32")

schedule = keras.optimizers.schedules.CosineDecay(
    initial_learning_rate=0.0, decay_steps=500, warmup_target=3.0, warmup_steps=60
)
model = keras.Sequential(
    [
        keras.Input((12, 12, 1)),
        keras.layers.Conv2D(8, 3, activation="tanh", name="conv_1"),
        keras.layers.Conv2D(16, 3, strides=2, activation="tanh", name="conv_2"),
        keras.layers.GlobalAveragePooling2D(name="gap"),
        keras.layers.Dense(16, activation="tanh", name="hidden"),
        keras.layers.Dense(1, name="fraction"),
    ],
    name="fraction_cnn",
)
model.compile(keras.optimizers.SGD(schedule, momentum=0.9), "mse")
history = model.fit(images, fraction, batch_size=32, epochs=2, verbose=0)
print("final loss:", history.history["loss"][-1])
