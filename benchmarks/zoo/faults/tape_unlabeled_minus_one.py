"""Hand-written `tf.function` training loop; unlabeled rows carry the label -1.

User story: a semi-supervised dataset marks unlabeled rows with label -1 (the usual "ignore"
convention from other frameworks). The user trains with their own `tf.function` step and
`SparseCategoricalCrossentropy(from_logits=True)` over an unshuffled `tf.data` pipeline. Keras
has no ignore index: on CPU TensorFlow raises at the batch holding row 300, the first -1.

Fault: label -1, outside [0, num_classes), in a hand-written `tf.function` loop.
Counterfactual checked: filtering out `labels < 0` trains finite.
"""

EXPECTED = {
    "root_cause": "label_out_of_range",
    "layer": None,
    "op": None,
    "dataset_indices": [300],
    "step": 9,
}

import keras
import numpy as np
import tensorflow as tf

keras.utils.set_random_seed(10)
rng = np.random.default_rng(10)

n = 640
x = rng.normal(size=(n, 16)).astype("float32")
labels = (np.argmax(x[:, :4], axis=1)).astype("int32")
labels[[300, 451, 452, 590]] = -1  # unlabeled rows

dataset = tf.data.Dataset.from_tensor_slices((x, labels)).batch(32)
model = keras.Sequential(
    [
        keras.Input((16,)),
        keras.layers.Dense(32, activation="relu", name="hidden"),
        keras.layers.Dense(4, name="logits"),
    ],
    name="semi_supervised",
)
optimizer = keras.optimizers.SGD(0.05)
loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@tf.function
def train_step(xb: tf.Tensor, yb: tf.Tensor) -> tf.Tensor:
    with tf.GradientTape() as tape:
        loss = loss_fn(yb, model(xb, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=False))
    return loss


loss = None
for _ in range(2):
    for xb, yb in dataset:
        loss = train_step(xb, yb)
print("final loss:", float(loss))
