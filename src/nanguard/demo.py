"""``nanguard demo``: the classic "why is my loss NaN?" situations, on synthetic data, guarded.

Each scenario is plain Keras code, the way a user would write it (the seed articles'
situations: one corrupt record among 9000 images, 0/0 in hand-written standardization, labels
past the output units, a learning rate that no longer fits, unscaled pixel values, a hand-written
``GradientTape`` loop).
They run in this process under the same guard as ``nanguard run``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class Scenario:
    name: str
    story: str
    train: Callable[[], None]


def _keras():
    import keras

    keras.utils.set_random_seed(7)
    return keras


def corrupt_image() -> None:
    keras = _keras()
    rng = np.random.default_rng(0)
    x = rng.random((9000, 12, 12, 1), dtype=np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0.5).astype("int32")
    x[6173, 4, 7, 0] = np.nan  # one unreadable pixel in one record
    model = keras.Sequential(
        [
            keras.Input((12, 12, 1)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2, activation="softmax"),
        ],
        name="image_classifier",
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0)


def zero_std() -> None:
    keras = _keras()
    rng = np.random.default_rng(1)
    raw = rng.normal(50.0, 10.0, (2000, 6)).astype("float32")
    raw[:, 4] = 3.0  # a constant column
    x = (raw - raw.mean(axis=0)) / raw.std(axis=0)  # 0/0 -> NaN in column 4
    y = raw[:, :2].sum(axis=1, keepdims=True) / 100.0
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)],
        name="regressor",
    )
    model.compile("adam", "mse")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)


def label_range() -> None:
    keras = _keras()
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1000, 20)).astype("float32")
    y = rng.integers(1, 11, 1000)  # classes numbered 1..10 for a 10-unit output
    model = keras.Sequential(
        [
            keras.Input((20,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ],
        name="classifier",
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)


def learning_rate() -> None:
    keras = _keras()
    rng = np.random.default_rng(3)
    x = rng.normal(size=(9000, 16)).astype("float32")  # standardized features
    y = x @ rng.normal(size=(16, 1)).astype("float32") + rng.normal(size=(9000, 1))
    model = keras.Sequential(
        [
            keras.Input((16,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(1),
        ],
        name="regressor_lr",
    )
    # Survives the 4 steps of 100 samples; 9000 samples give it time to diverge.
    model.compile(keras.optimizers.SGD(learning_rate=0.2, momentum=0.9), "mse")
    model.fit(x, y.astype("float32"), batch_size=32, epochs=1, verbose=0)


def unscaled_pixels() -> None:
    keras = _keras()
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 255, (9000, 16)).astype("float32")  # raw pixel scale
    y = x @ rng.normal(size=(16, 1)).astype("float32") / 255.0
    model = keras.Sequential(
        [keras.Input((16,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)],
        name="pixel_regressor",
    )
    model.compile(keras.optimizers.SGD(learning_rate=0.01), "mse")  # suits x / 255.0
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)


def gradient_tape_loop() -> None:
    keras = _keras()
    import tensorflow as tf

    rng = np.random.default_rng(4)
    images = rng.random((512, 8, 8, 1), dtype=np.float32)
    labels = keras.utils.to_categorical(rng.integers(0, 4, 512), 4)
    images[300] = np.inf  # an overflowed record
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(32)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(4, activation="softmax"),
        ],
        name="tape_model",
    )
    optimizer = keras.optimizers.Adam(learning_rate=0.001)
    loss_fn = keras.losses.CategoricalCrossentropy()

    @tf.function
    def train_step(images: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            predictions = model(images, training=True)
            loss = loss_fn(labels, predictions)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return loss

    for _ in range(2):
        for batch_images, batch_labels in dataset:
            train_step(batch_images, batch_labels)


SCENARIOS = [
    Scenario("corrupt-image", "one corrupt record among 9000 images", corrupt_image),
    Scenario("zero-std", "0/0 in hand-written standardization (a constant column)", zero_std),
    Scenario("label-range", "labels 1..10 for a 10-unit softmax", label_range),
    Scenario("learning-rate", "a learning rate that survived 100 samples, on 9000", learning_rate),
    Scenario(
        "unscaled-pixels",
        "raw 0..255 pixel values with a learning rate that suits scaled ones",
        unscaled_pixels,
    ),
    Scenario(
        "gradient-tape",
        "a hand-written GradientTape loop meets an overflowed record",
        gradient_tape_loop,
    ),
]


def run_demo(
    only: list[str] | None = None,
    *,
    list_only: bool = False,
    json_path: str | None = None,
    report_dir: str | None = None,
) -> int:
    if list_only:
        for scenario in SCENARIOS:
            print(f"{scenario.name:15} {scenario.story}")
        return 0
    chosen = [s for s in SCENARIOS if not only or s.name in only]
    unknown = sorted(set(only or []) - {s.name for s in SCENARIOS})
    if unknown:
        from nanguard.runscript import UsageError

        raise UsageError(f"nanguard demo: unknown scenario {', '.join(unknown)} (see --list)")

    from nanguard.contract import Report
    from nanguard.guard.session import Session
    from nanguard.probe.halt import is_guard_stop
    from nanguard.render.terminal import print_run_summary
    from nanguard.runscript import write_outputs

    combined = Report()
    for scenario in chosen:
        print(f"\n== {scenario.name}: {scenario.story}", file=sys.stderr)
        session = Session("stop")
        session.install()
        began = time.perf_counter()
        error: BaseException | None = None
        try:
            scenario.train()
        except Exception as exc:
            error = exc
        finally:
            session.uninstall()
        if error is not None and not is_guard_stop(error):
            print(f"   training raised {type(error).__name__}", file=sys.stderr)
        for run in session.finish(error).runs:
            print_run_summary(run, warnings=False)  # each was printed as it appeared
            combined.runs.append(run)
        print(f"   ({time.perf_counter() - began:.1f} s)", file=sys.stderr)
    write_outputs(combined, json_path, report_dir)
    return 0
