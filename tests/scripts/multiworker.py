"""One worker of a two-process MultiWorkerMirroredStrategy cluster on CPU (``TF_CONFIG`` names
the cluster and this worker), running data-parallel ``fit`` once per scenario given as
``POLICY:ROWS`` (``POLICY`` one of stop, skip, plain: no guard; ``ROWS`` the data rows made NaN,
joined by ``+``, or -1 for clean data), each on a fresh model with the same seed. Prints one JSON
line: per scenario, this worker's report and weights.
"""

import json
import sys

import tensorflow as tf

strategy = tf.distribute.MultiWorkerMirroredStrategy()

import keras  # noqa: E402
import numpy as np  # noqa: E402

import nanguard  # noqa: E402

ROWS, FEATURES, BATCH = 256, 4, 32  # global batch: 16 rows per worker, in row order


def dataset(bad_rows: list[int]) -> tf.data.Dataset:
    x = np.random.default_rng(0).normal(size=(ROWS, FEATURES)).astype("float32")
    y = x[:, :1] * 2.0
    for row in bad_rows:
        x[row, 3] = np.nan
    options = tf.data.Options()  # each worker takes its share of every global batch
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH).with_options(options)


class Model(keras.Sequential):
    """Logs as one-element vectors: Keras 3 reduces each log with ``strategy.reduce("MEAN", v,
    axis=0)`` under this strategy, which fails on the scalars ``train_step`` returns."""

    def train_step(self, data: tuple) -> dict:
        return {k: tf.reshape(v, [1]) for k, v in super().train_step(data).items()}


def build(model: keras.Model, data: tf.data.Dataset) -> None:
    """Build the model as ``fit`` would, and keep ``fit`` from trying: under this strategy Keras
    3 fails to (it reduces the first batch's ``(x, y)`` tuple in one ``strategy.reduce``, which
    MultiWorkerMirroredStrategy rejects: keras-team/keras#20585, tensorflow/tensorflow#72388)."""
    with strategy.scope():
        model._symbolic_build(data_batch=next(iter(data)))
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None


def fit(policy: str, bad_rows: list[int]) -> dict:
    """BatchNormalization's moving statistics are per replica (Keras does not synchronize them),
    so only the trainable weights are the same on every worker."""
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = Model(
            [
                keras.Input((FEATURES,)),
                keras.layers.Dense(8, activation="tanh"),
                keras.layers.BatchNormalization(),
                keras.layers.Dense(1),
            ]
        )
        model.compile("adam", "mse")
    data = dataset(bad_rows)
    build(model, data)
    guard = nanguard.Guard(policy, verbose=False, data=data) if policy != "plain" else None
    model.fit(data, epochs=1, verbose=0, callbacks=[guard] if guard else [])
    weights = [np.asarray(w.numpy()) for w in model.weights]
    return {
        "report": guard.report.to_dict() if guard else None,
        "finite": all(np.isfinite(w).all() for w in weights),
        "weights": [w.tolist() for w in weights],
        "trainable": [np.asarray(w.numpy()).tolist() for w in model.trainable_weights],
    }


runs = {}
for scenario in sys.argv[1:]:
    policy, rows = scenario.split(":")
    runs[scenario] = fit(policy, [int(r) for r in rows.split("+") if int(r) >= 0])
print(
    json.dumps(
        {
            "worker": strategy.cluster_resolver.task_id,
            "replicas": strategy.num_replicas_in_sync,
            "runs": runs,
        }
    )
)
