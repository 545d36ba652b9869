"""Two-headed customer model (age regression + churn classification) with one NaN age.

User story: a Functional model with a shared trunk and two named outputs, trained on a dict of
targets. Customer 777 never entered a birth date, so the derived age is NaN. The churn labels are
all fine; only the `age` head's loss goes NaN. Unshuffled, batch 50.

Fault: one non-finite target in one output of a multi-output model.
Counterfactual checked: dropping row 777 trains finite.
"""

EXPECTED = {
    "root_cause": "target_nonfinite",
    "layer": None,
    "op": None,
    "dataset_indices": [777],
    "step": 15,
}

import keras
import numpy as np

keras.utils.set_random_seed(6)
rng = np.random.default_rng(6)

n = 1500
x = rng.normal(size=(n, 10)).astype("float32")
age = (0.3 * x[:, 0] + 0.2 * x[:, 1] + rng.normal(0, 0.1, n)).astype("float32")  # standardized
churn = (x[:, 2] + 0.5 * x[:, 3] > 0.5).astype("float32")
age[777] = np.nan  # missing birth date

inputs = keras.Input((10,), name="features")
trunk = keras.layers.Dense(32, activation="relu", name="trunk_1")(inputs)
trunk = keras.layers.Dense(16, activation="relu", name="trunk_2")(trunk)
age_out = keras.layers.Dense(1, name="age")(trunk)
churn_out = keras.layers.Dense(1, activation="sigmoid", name="churn")(trunk)
model = keras.Model(inputs, {"age": age_out, "churn": churn_out}, name="customer")
model.compile(
    keras.optimizers.Adam(1e-3),
    loss={"age": "mse", "churn": "binary_crossentropy"},
    loss_weights={"age": 1.0, "churn": 0.5},
)
history = model.fit(
    x, {"age": age, "churn": churn}, batch_size=50, epochs=1, shuffle=False, verbose=0
)
print("final loss:", history.history["loss"][-1])
