"""Data-parallel fit on two logical CPUs with one NaN record, guarded by nanguard.Guard.

    python mirrored.py BAD_ROW [stop|skip|heal|plain] [clip] [central]

``clip``: Adam with ``clipnorm``, which Keras applies to each replica's gradients before summing
them, so the guard leaves the sum to Keras there (see ``StepProbe._all_reduce``). ``central``:
``CentralStorageStrategy`` (variables on one device, computation on both) instead of
``MirroredStrategy``.

Adam at 0.01, so that three epochs of ``heal`` clearly lower the loss whenever the host gets to
act: the batches that run while the bad step pauses the graph are not trained on, and how many
that is depends on the machine's load (on a loaded CI machine, the rest of the first epoch), so
at Keras' default rate the run's verdict was decided by which batches its first epoch kept.
"""

import json
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import nanguard  # noqa: E402

bad_row = int(sys.argv[1]) if len(sys.argv) > 1 else -1
mode = sys.argv[2] if len(sys.argv) > 2 else "stop"  # "plain" (no guard), or a policy
guarded = mode != "plain"
keras.utils.set_random_seed(0)
x = np.random.default_rng(0).normal(size=(256, 4)).astype("float32")
y = x[:, :1] * 2.0
if bad_row >= 0:
    x[bad_row, 3] = np.nan
devices = ["/cpu:0", "/cpu:1"]
if "central" in sys.argv[3:]:
    strategy = tf.distribute.experimental.CentralStorageStrategy(devices)
else:
    strategy = tf.distribute.MirroredStrategy(devices)
with strategy.scope():
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)]
    )
    clip = "clip" in sys.argv[3:]
    model.compile(keras.optimizers.Adam(0.01, clipnorm=0.5 if clip else None), "mse")
guard = nanguard.Guard(mode if guarded else "stop", verbose=False, data=x)
dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
epochs = 3 if mode == "heal" else 1
model.fit(dataset, epochs=epochs, verbose=0, callbacks=[guard] if guarded else [])
replicas = [
    [np.asarray(v) for v in strategy.experimental_local_results(w.value)] for w in model.weights
]
print(
    json.dumps(
        {
            "replicas": strategy.num_replicas_in_sync,
            "report": guard.report.to_dict(),
            "same_on_replicas": all(all(np.array_equal(r[0], o) for o in r[1:]) for r in replicas),
            "finite": all(np.isfinite(r).all() for rs in replicas for r in rs),
            "weights": [r[0].tolist() for r in replicas],
        }
    )
)
