"""Order-value model trained on a log-ratio loss; two orders are refunds with negative value.

User story: an e-commerce analyst predicts the value of a customer's next order (in hundreds of
euros, typically 0.2 to 5) from 14 standardized behaviour features. Because errors should be
relative, they wrote their own loss, the squared log ratio `(log y_pred - log y_true)^2`, with a
softplus output so the prediction is always positive. The target table also holds two refunds,
booked as negative order values (rows 1500 and 2871). A Functional model is trained with Adam
on shuffled numpy arrays for 5 epochs. log of a negative target is NaN, so the first batch with a
refund has a NaN loss and NaN gradients, and the weights turn NaN.

Fault: targets outside the loss's domain (negative values into a log loss), rows 1500 and 2871
(CONTRACT: invalid_target).
Counterfactual checked: dropping the two refund rows (`y > 0`) trains finite with the same loss.
"""

EXPECTED = {
    "root_cause": "invalid_target",
    "layer": None,
    "op": None,
    "dataset_indices": [1500, 2871],
    "step": 14,
}

import keras
import numpy as np
import tensorflow as tf

keras.utils.set_random_seed(59)
rng = np.random.default_rng(59)

n = 3000
x = rng.normal(size=(n, 14)).astype("float32")
value = np.exp(0.4 * x[:, 0] + 0.25 * x[:, 1] - 0.2 * x[:, 7] + rng.normal(0, 0.15, n))
value = value.astype("float32").reshape(-1, 1)
value[1500, 0] = -0.85  # refund booked as a negative order
value[2871, 0] = -2.10


def squared_log_ratio(y_true, y_pred):
    return tf.reduce_mean(tf.square(tf.math.log(y_pred) - tf.math.log(y_true)), axis=-1)


inputs = keras.Input((14,), name="behaviour")
h = keras.layers.Dense(64, activation="relu", name="hidden_1")(inputs)
h = keras.layers.Dense(32, activation="relu", name="hidden_2")(h)
outputs = keras.layers.Dense(1, activation="softplus", name="order_value")(h)
model = keras.Model(inputs, outputs, name="order_value_model")

model.compile(keras.optimizers.Adam(1e-3), squared_log_ratio)
history = model.fit(x, value, batch_size=64, epochs=5, verbose=0)
print("final loss:", history.history["loss"][-1])
