"""Click-through model on a dict tf.data pipeline; one engineered ratio feature divides by zero.

User story: a Functional model with two named inputs (`stats`: 5 numeric columns, `country`: an
integer id through an Embedding) predicts whether a shop converts. The user engineered
`log(clicks / visits)` in numpy before building `tf.data.Dataset.from_tensor_slices` (unshuffled,
batch 32). Shop 517 was opened the day of the export: 0 visits and 3 clicks, so the ratio is
3/0 = inf and its log stays inf. The model input is non-finite before any layer runs.

Fault: a non-finite value in the model inputs (one row, feature engineered by the user).
Counterfactual checked: `np.log1p(clicks) - np.log1p(visits)` for that column trains finite.
"""

EXPECTED = {
    "root_cause": "input_nonfinite",
    "layer": None,
    "op": None,
    "dataset_indices": [517],
    "step": 16,
}

import keras
import numpy as np
import tensorflow as tf

keras.utils.set_random_seed(101)
rng = np.random.default_rng(101)

n = 1280
visits = rng.integers(20, 500, size=n).astype("float32")
clicks = np.floor(visits * rng.uniform(0.01, 0.3, size=n)).astype("float32") + 1.0
visits[517], clicks[517] = 0.0, 3.0  # opened on the day of the export
with np.errstate(divide="ignore"):
    ratio = np.log(clicks / visits)
other = rng.normal(size=(n, 4)).astype("float32")
stats = np.concatenate([ratio[:, None], other], axis=1).astype("float32")
country = rng.integers(0, 30, size=n).astype("int32")
converted = ((ratio > -2.0) ^ (other[:, 0] > 1.0)).astype("float32")

dataset = tf.data.Dataset.from_tensor_slices(({"stats": stats, "country": country}, converted))
dataset = dataset.batch(32)

stats_in = keras.Input((5,), name="stats")
country_in = keras.Input((), dtype="int32", name="country")
emb = keras.layers.Embedding(30, 4, name="country_emb")(country_in)
h = keras.layers.Concatenate(name="concat")([stats_in, emb])
h = keras.layers.Dense(32, activation="relu", name="hidden")(h)
out = keras.layers.Dense(1, activation="sigmoid", name="converts")(h)
model = keras.Model({"stats": stats_in, "country": country_in}, out, name="conversion")
model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
history = model.fit(dataset, epochs=2, verbose=0)
print("final loss:", history.history["loss"][-1])
