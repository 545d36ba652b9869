"""A hand-written data-parallel loop (``strategy.run`` in a ``tf.function``) on two logical CPUs,
with one NaN record (row 120: step 3, position 24 of the global batch of 32, in the second
replica's share). Prints whether the weights ended finite."""

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

keras.utils.set_random_seed(0)
x = np.random.default_rng(0).normal(size=(256, 4)).astype("float32")
y = x[:, :1] * 2.0
x[120, 3] = np.nan
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)]
    )
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)  # inside strategy.run, Keras 3.15 cannot build it
batches = strategy.experimental_distribute_dataset(
    tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
)


@tf.function
def train_step(batch):
    def step(xb, yb):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(model(xb, training=True) - yb)) / 32
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    return strategy.run(step, args=batch)


for batch in batches:
    train_step(batch)
print("finite", all(np.isfinite(w).all() for w in model.get_weights()))
