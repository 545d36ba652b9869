"""A plain Keras script: one NaN record; prints its argv and where it runs from."""

import os
import sys

import keras
import numpy as np

keras.utils.set_random_seed(0)
x = np.random.default_rng(0).normal(size=(256, 4)).astype("float32")
y = x[:, :1] * 2.0
x[70, 1] = np.nan
model = keras.Sequential(
    [keras.Input((4,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)]
)
model.compile(keras.optimizers.Adam(0.01), "mse")
model.fit(x, y, batch_size=32, epochs=6, shuffle=False, verbose=0)
weights_finite = all(np.isfinite(w).all() for w in model.get_weights())
folder = os.path.basename(sys.path[0])
print(f"argv={sys.argv[1:]} name={__name__} path0={folder} finite={weights_finite}")
