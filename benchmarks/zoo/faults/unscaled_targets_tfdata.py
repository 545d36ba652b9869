"""Salary regression on standardized features but targets in raw dollars (~1e5).

User story: the inputs were standardized, but the target is the raw salary in dollars. With
plain SGD at 0.01 the error gradient is ~1e5 per sample, the first update is huge and the loss
overflows within a few steps. Data comes through a shuffled `tf.data` pipeline.

Fault: targets far from unit scale (CONTRACT: "inputs/targets far from unit scale").
Counterfactual checked: `salary / 1e5` trains finite at the same learning rate.
"""

EXPECTED = {
    "root_cause": "unscaled_input",
    "layer": None,
    "op": None,
    "dataset_indices": None,
    "step": 3,
}

import keras
import numpy as np
import tensorflow as tf

keras.utils.set_random_seed(18)
rng = np.random.default_rng(18)

n = 2048
x = rng.normal(size=(n, 7)).astype("float32")
salary = (85000 + 20000 * x[:, 0] + 8000 * x[:, 1] + rng.normal(0, 3000, n)).astype("float32")
dataset = tf.data.Dataset.from_tensor_slices((x, salary)).shuffle(n, seed=3).batch(64)

model = keras.Sequential(
    [
        keras.Input((7,)),
        keras.layers.Dense(32, activation="relu", name="hidden"),
        keras.layers.Dense(1, name="salary"),
    ],
    name="salary",
)
model.compile(keras.optimizers.SGD(0.01), "mse")
history = model.fit(dataset, epochs=2, verbose=0)
print("final loss:", history.history["loss"][-1])
