"""Support-ticket router with five queues; three tickets carry a sixth queue's id.

User story: a support team routes tickets into 5 queues from a 60-dim text embedding plus 4
metadata features (Functional model with two inputs). The labels are queue ids from the ticket
system; a sixth queue ("billing disputes", id 5) was created last week and three exported
tickets already carry it, while the model's head still has 5 units. Training with Adam on
shuffled numpy arrays for 5 epochs: the first batch (step 0) already holds one of those tickets
and fails inside sparse categorical cross-entropy (on CPU TensorFlow raises on the label).

Fault: labels equal to 5 (outside [0, 5)) at rows 488, 1291 and 2203 (CONTRACT:
label_out_of_range).
Counterfactual checked: dropping those three tickets trains finite with the same model.
"""

EXPECTED = {
    "root_cause": "label_out_of_range",
    "layer": None,
    "op": None,
    "dataset_indices": [488, 1291, 2203],
    "step": 0,
}

import keras
import numpy as np

keras.utils.set_random_seed(5)
rng = np.random.default_rng(5)

n, queues = 2400, 5
queue = rng.integers(0, queues, n)
centers = rng.normal(size=(queues, 60)).astype("float32")
text = (centers[queue] + rng.normal(0, 1.5, size=(n, 60))).astype("float32")
meta = rng.normal(size=(n, 4)).astype("float32")
meta[:, 0] += 0.5 * queue  # priority correlates with the queue
queue = queue.astype("int64")
queue[[488, 1291, 2203]] = 5  # tickets from the new "billing disputes" queue

text_in = keras.Input((60,), name="text_embedding")
meta_in = keras.Input((4,), name="metadata")
h_text = keras.layers.Dense(64, activation="relu", name="text_dense")(text_in)
h_meta = keras.layers.Dense(8, activation="relu", name="meta_dense")(meta_in)
h = keras.layers.Concatenate(name="merge")([h_text, h_meta])
h = keras.layers.Dense(32, activation="relu", name="joint")(h)
out = keras.layers.Dense(queues, name="queue_logits")(h)
model = keras.Model([text_in, meta_in], out, name="ticket_router")

model.compile(
    keras.optimizers.Adam(1e-3),
    keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["accuracy"],
)
history = model.fit(
    {"text_embedding": text, "metadata": meta}, queue, batch_size=64, epochs=5, verbose=0
)
print("final loss:", history.history["loss"][-1])
