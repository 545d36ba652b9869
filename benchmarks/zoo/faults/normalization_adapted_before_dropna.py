"""Fuel-efficiency regression (the Auto MPG tutorial) with the normalizer adapted too early.

User story: following the Keras regression tutorial, the features go through a
`keras.layers.Normalization` layer adapted on the feature table. The table has six cars with a
missing horsepower (NaN). The user drops those rows for training, but adapted the normalizer on
the table before dropping them: its horsepower mean and variance are NaN. Every training batch is
finite, yet the first step's loss is NaN.

Fault: statistics adapted on data with a missing value (seed article: one bad record is enough).
Counterfactual checked: adapting on the rows kept for training trains finite. (The tutorial's
deeper model, two relu layers after the normalizer, reports a finite loss here on a CPU with the
same NaN statistics: the fused relu turns the NaN activations into 0, while the first kernel's
gradient is NaN and the kernel goes NaN at the first update, predictions then constant. The guard
stops that at step 0 as a non-finite gradient with this same diagnosis; the zoo, which verifies
a non-finite loss, uses the tutorial's linear model.)
"""

EXPECTED = {
    "root_cause": "bad_initialization",
    "layer": "normalizer",
    "op": None,
    "dataset_indices": None,
    "step": 0,
}

import keras
import numpy as np

keras.utils.set_random_seed(5)
rng = np.random.default_rng(5)

n = 398
cylinders = rng.choice([4.0, 6.0, 8.0], n)
displacement = cylinders * rng.normal(40.0, 5.0, n)
horsepower = displacement * rng.normal(0.5, 0.05, n) + 20.0
weight = displacement * rng.normal(12.0, 1.0, n) + 1500.0
year = rng.integers(70, 83, n).astype(float)
mpg = 60.0 - 0.008 * weight + 0.5 * (year - 70) + rng.normal(0.0, 2.0, n)
horsepower[[32, 126, 330, 336, 354, 374]] = np.nan  # missing in the source file
features = np.stack([cylinders, displacement, horsepower, weight, year], axis=1).astype("float32")

normalizer = keras.layers.Normalization(axis=-1, name="normalizer")
normalizer.adapt(features)  # before the rows with a missing value are dropped

keep = np.isfinite(features).all(axis=1)
train_x, train_y = features[keep], mpg[keep].astype("float32")[:, None]

model = keras.Sequential(  # the tutorial's linear model on all features
    [keras.Input((5,)), normalizer, keras.layers.Dense(1, name="mpg")], name="mpg_linear"
)
model.compile(keras.optimizers.Adam(0.1), "mean_absolute_error")
history = model.fit(train_x, train_y, batch_size=32, epochs=2, shuffle=False, verbose=0)
print("final loss:", history.history["loss"][-1])
