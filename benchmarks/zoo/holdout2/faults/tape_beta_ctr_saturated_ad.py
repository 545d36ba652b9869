"""Click-through-rate model with a Beta likelihood: an MLP outputs the two Beta concentrations
(softplus), the negative log-likelihood is written out with `lgamma`, and an eager
`GradientTape` loop walks a fresh numpy permutation of the ads each epoch.

Planted fault: the CTR targets are clicks / impressions, inside (0, 1) for real ads, but test ad
1262 was shown to 4 internal testers who all clicked it, so its target is exactly 1.0, outside the
Beta density's support. `(b - 1) * log(1 - y)` takes log(0) = -inf: the loss is -inf and every
gradient NaN at step 17, the batch that holds row 1262 in the first permutation.

Counterfactual (run, trains finite): clip the targets, `np.clip(clicks / impressions, 1e-4,
1 - 1e-4)`.
Measured: steps 0-16 finite, step 17 non-finite, in the script's eager loop and in a replay of the
same permutation; the three layer outputs are finite at step 17 (max 2.1), so no layer qualifies.
"""

EXPECTED = {
    "root_cause": "invalid_target",
    "layer": None,
    "op": "Log",
    "dataset_indices": [1262],
    "step": 17,
}

import keras
import numpy as np
import tensorflow as tf

keras.utils.set_random_seed(21)
rng = np.random.default_rng(21)

N, D = 1800, 8
features = rng.normal(size=(N, D)).astype("float32")
true_ctr = 1 / (1 + np.exp(-(-2.5 + features[:, 0] - 0.6 * features[:, 3])))
impressions = rng.integers(200, 5000, size=N)
clicks = np.minimum(rng.binomial(impressions, true_ctr), impressions - 1)
clicks = np.maximum(clicks, 1)
# A test ad shown to 4 internal testers, all of whom clicked it.
impressions[1262], clicks[1262] = 4, 4
ctr = (clicks / impressions).astype("float32")

inputs = keras.Input((D,), name="ad_features")
h = keras.layers.Dense(32, activation="relu", name="hidden_1")(inputs)
h = keras.layers.Dense(32, activation="relu", name="hidden_2")(h)
concentration = keras.layers.Dense(2, activation="softplus", name="concentration")(h)
model = keras.Model(inputs, concentration)


def beta_nll(y, conc):
    a = conc[:, 0] + 1e-3
    b = conc[:, 1] + 1e-3
    log_beta_fn = tf.math.lgamma(a) + tf.math.lgamma(b) - tf.math.lgamma(a + b)
    log_lik = (a - 1) * tf.math.log(y) + (b - 1) * tf.math.log(1 - y) - log_beta_fn
    return -tf.reduce_mean(log_lik)


optimizer = keras.optimizers.Adam(1e-3)
batch_size = 64
loss = None
for epoch in range(2):
    order = rng.permutation(N)
    for start in range(0, N, batch_size):
        idx = order[start : start + batch_size]
        with tf.GradientTape() as tape:
            conc = model(features[idx], training=True)
            loss = beta_nll(ctr[idx], conc)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
    print(f"epoch {epoch}: loss {float(loss):.4f}")
print("final loss:", float(loss))
