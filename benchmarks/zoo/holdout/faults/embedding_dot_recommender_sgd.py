"""Matrix-factorization recommender (two Embedding inputs, dot product) with SGD at lr=40.

User story: user and item ids go through two Embedding tables; the rating (centred, unit scale)
is their dot product plus a bias. A blog post said "matrix factorization needs a big learning
rate with plain SGD because each embedding row is touched rarely" and the user took lr=40.
The embedding rows that are touched get updates far larger than the curvature allows, the dot
products overshoot back and forth with growing amplitude and the loss diverges to inf/NaN.
Data and inputs are unit scale. Arrays, shuffled (fixed seed), batch 128.

Fault: updates too large for the loss surface (learning rate), divergence.
Counterfactual checked: `SGD(1.0)` trains finite.
"""

EXPECTED = {
    "root_cause": "learning_rate_too_high",
    "layer": "dot",
    "op": None,
    "dataset_indices": None,
    "step": 5,
}

import keras
import numpy as np

keras.utils.set_random_seed(333)
rng = np.random.default_rng(333)

n_users, n_items, n = 200, 150, 6000
true_u = rng.normal(size=(n_users, 4)) * 0.5
true_i = rng.normal(size=(n_items, 4)) * 0.5
users = rng.integers(0, n_users, size=n).astype("int32")
items = rng.integers(0, n_items, size=n).astype("int32")
ratings = ((true_u[users] * true_i[items]).sum(1) + 0.1 * rng.normal(size=n)).astype("float32")

user_in = keras.Input((), dtype="int32", name="user")
item_in = keras.Input((), dtype="int32", name="item")
u = keras.layers.Embedding(n_users, 8, name="user_emb")(user_in)
i = keras.layers.Embedding(n_items, 8, name="item_emb")(item_in)
score = keras.layers.Dot(axes=1, name="dot")([u, i])
out = keras.layers.Dense(1, name="rating")(score)
model = keras.Model([user_in, item_in], out, name="matrix_factorization")
model.compile(keras.optimizers.SGD(40.0), "mse")
history = model.fit([users, items], ratings, batch_size=128, epochs=3, verbose=0)
print("final loss:", history.history["loss"][-1])
