"""Fault and healthy training scenarios for the tests: plain Keras, synthetic data, fixed seeds.

Each builder returns a fresh, compiled model and the arguments of its ``fit`` call, so the same
scenario can be trained with and without the guard and the two compared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
from keras import ops


@dataclass
class Case:
    model: keras.Model
    x: Any
    y: Any
    fit: dict[str, Any] = field(default_factory=dict)


def _mlp(
    inputs: int, outputs: int, activation: str | None = None, hidden: str = "relu"
) -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((inputs,)),
            keras.layers.Dense(16, activation=hidden),
            keras.layers.Dense(outputs, activation=activation),
        ]
    )


def _regression(
    rng: np.random.Generator, n: int = 320, d: int = 6
) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(n, d)).astype("float32")
    y = (x[:, :2].sum(axis=1, keepdims=True) * 0.5).astype("float32")
    return x, y


def nan_input() -> Case:
    x, y = _regression(np.random.default_rng(0))
    x[133, 2] = np.nan
    model = _mlp(6, 1, hidden="tanh")
    model.compile("adam", "mse")
    return Case(model, x, y, {"batch_size": 32, "shuffle": False})


def inf_input_shuffled() -> Case:
    x, y = _regression(np.random.default_rng(1))
    x[250, 0] = np.inf
    model = _mlp(6, 1, hidden="tanh")
    model.compile("sgd", "mse")
    return Case(model, x, y, {"batch_size": 16, "shuffle": True})


def nan_target() -> Case:
    x, y = _regression(np.random.default_rng(2))
    y[77, 0] = np.nan
    model = _mlp(6, 1)
    model.compile("adam", "mse")
    return Case(model, x, y, {"batch_size": 32, "shuffle": False})


def zero_std_column() -> Case:
    rng = np.random.default_rng(3)
    raw = rng.normal(5.0, 2.0, (256, 5)).astype("float32")
    raw[:, 3] = 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        x = (raw - raw.mean(axis=0)) / raw.std(axis=0)
    y = raw[:, :1] / 10.0
    model = _mlp(5, 1)
    model.compile("adam", "mse")
    return Case(model, x, y, {"batch_size": 32, "shuffle": False})


def label_out_of_range() -> Case:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 8)).astype("float32")
    y = rng.integers(0, 4, 300)
    y[201] = 4
    model = _mlp(8, 4, activation="softmax")
    model.compile("adam", "sparse_categorical_crossentropy")
    return Case(model, x, y, {"batch_size": 25, "shuffle": False})


def learning_rate_too_high() -> Case:
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 255, (640, 16)).astype("float32")
    y = (x @ rng.normal(size=(16, 1)) / 255.0).astype("float32")
    model = _mlp(16, 1, hidden="linear")
    model.compile(keras.optimizers.SGD(0.01), "mse")
    return Case(model, x, y, {"batch_size": 32, "shuffle": False})


def exploding_relu_rnn() -> Case:
    rng = np.random.default_rng(6)
    x = rng.normal(size=(256, 40, 3)).astype("float32")
    y = rng.normal(size=(256, 1)).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((40, 3)),
            keras.layers.SimpleRNN(
                16,
                activation="relu",
                recurrent_initializer=keras.initializers.Orthogonal(gain=1.6),
            ),
            keras.layers.Dense(1),
        ]
    )
    model.compile(keras.optimizers.SGD(0.01), "mse")
    return Case(model, x, y, {"batch_size": 32, "shuffle": False, "epochs": 3})


def log_of_zero_loss() -> Case:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(256, 6)).astype("float32") * 4
    y = (rng.random((256, 1)) > 0.5).astype("float32")

    def handmade_bce(y_true: Any, y_pred: Any) -> Any:
        return -ops.mean(y_true * ops.log(y_pred) + (1 - y_true) * ops.log(1 - y_pred))

    model = _mlp(6, 1, activation="sigmoid")
    model.compile(keras.optimizers.Adam(0.5), handmade_bce)
    return Case(model, x, y, {"batch_size": 32, "shuffle": False, "epochs": 4})


class Exp(keras.layers.Layer):
    def call(self, x: Any) -> Any:
        return ops.exp(x)


def exp_overflow() -> Case:
    rng = np.random.default_rng(8)
    x = rng.normal(size=(256, 4)).astype("float32")
    x[150] = 30.0
    y = rng.normal(size=(256, 1)).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, kernel_initializer="ones"),
            Exp(name="exp"),
            keras.layers.Dense(1),
        ]
    )
    model.compile("adam", "mse")
    return Case(model, x, y, {"batch_size": 32, "shuffle": False})


class Norm(keras.layers.Layer):
    """Hand-written L2 norm: finite forward, 0/0 gradient at a zero vector."""

    def call(self, x: Any) -> Any:
        return ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True))


def sqrt_at_zero() -> Case:
    rng = np.random.default_rng(9)
    x = rng.random((128, 4)).astype("float32") + 0.5
    x[70] = 0.0
    y = rng.normal(size=(128, 1)).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(4, use_bias=False),
            Norm(name="norm"),
            keras.layers.Dense(1),
        ]
    )
    model.compile("sgd", "mse")
    return Case(model, x, y, {"batch_size": 16, "shuffle": False})


class MaskedSoftmax(keras.layers.Layer):
    """Attention-style softmax where a fully masked row gives 0/0."""

    def call(self, inputs: Any) -> Any:
        scores, mask = inputs
        scores = ops.where(mask > 0, scores, -np.inf)
        return ops.softmax(scores, axis=-1)


def fully_masked_softmax() -> Case:
    rng = np.random.default_rng(10)
    scores = rng.normal(size=(192, 5)).astype("float32")
    mask = (rng.random((192, 5)) > 0.3).astype("float32")
    mask[mask.sum(axis=1) == 0, 0] = 1.0
    mask[99] = 0.0
    y = rng.integers(0, 3, 192)
    s_in, m_in = keras.Input((5,)), keras.Input((5,))
    weights = MaskedSoftmax(name="masked_softmax")([keras.layers.Dense(5)(s_in), m_in])
    out = keras.layers.Dense(3, activation="softmax")(weights)
    model = keras.Model([s_in, m_in], out)
    model.compile("adam", "sparse_categorical_crossentropy")
    return Case(model, [scores, mask], y, {"batch_size": 32, "shuffle": False})


def nan_sample_weight() -> Case:
    x, y = _regression(np.random.default_rng(11))
    weights = np.ones(len(x), "float32")
    weights[40] = np.nan
    model = _mlp(6, 1)
    model.compile("adam", "mse")
    return Case(model, x, y, {"batch_size": 32, "shuffle": False, "sample_weight": weights})


def dict_inputs_nan() -> Case:
    rng = np.random.default_rng(12)
    a = rng.normal(size=(200, 3)).astype("float32")
    b = rng.normal(size=(200, 2)).astype("float32")
    b[123, 1] = np.nan
    y = rng.normal(size=(200, 1)).astype("float32")
    ia, ib = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    h = keras.layers.Concatenate()([keras.layers.Dense(4)(ia), keras.layers.Dense(4)(ib)])
    model = keras.Model({"a": ia, "b": ib}, keras.layers.Dense(1)(h))
    model.compile("adam", "mse")
    return Case(model, {"a": a, "b": b}, y, {"batch_size": 20, "shuffle": False})


class SafeLog(keras.layers.Layer):
    """The `where` trick: log(h) where h > 0, else 0. Finite forward; at h == 0 (a relu's zeros)
    the untaken log branch is -inf and its gradient 1/0, so the backward pass is 0 x inf = NaN."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.proj = keras.layers.Dense(4, activation="relu", name="proj")

    def call(self, x: Any) -> Any:
        h = self.proj(x)
        return ops.where(h > 0, ops.log(h), ops.zeros_like(h))


def where_trick() -> Case:
    rng = np.random.default_rng(30)
    x = rng.normal(size=(128, 6)).astype("float32")
    y = rng.normal(size=(128, 1)).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.BatchNormalization(name="bn"),
            SafeLog(name="safe_log"),
            keras.layers.Dense(1, name="out"),
        ]
    )
    model.compile("sgd", "mse")
    return Case(model, x, y, {"batch_size": 16, "shuffle": False})


class Scorer(keras.Model):
    """A subclassed model that exponentiates its score in its own ``call``."""

    def __init__(self) -> None:
        super().__init__(name="scorer")
        self.hidden = keras.layers.Dense(8, activation="tanh", name="hidden")
        self.score = keras.layers.Dense(1, name="score")

    def call(self, x: Any) -> Any:
        return ops.exp(self.score(self.hidden(x)) * 200.0)


def subclassed_exp() -> Case:
    rng = np.random.default_rng(31)
    x = rng.normal(size=(256, 5)).astype("float32")
    y = rng.random((256, 1)).astype("float32")
    model = Scorer()
    model(x[:1])  # built before fit, so the reference run can keep its pre-step weights
    model.compile(keras.optimizers.Adam(0.05), "mse")
    return Case(model, x, y, {"batch_size": 32, "shuffle": False})


def relu_into_crossentropy() -> Case:
    rng = np.random.default_rng(33)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 3, 256), 3)
    model = _mlp(8, 3, activation="relu")
    model.compile(keras.optimizers.Adam(0.01), "categorical_crossentropy")
    return Case(model, x, y, {"batch_size": 32, "shuffle": False})


def _deep_relu(inputs: int, units: int, depth: int, init: Any) -> keras.Model:
    """``depth`` ReLU layers ``deep_0``... whose kernels all come from ``init``, then one output."""
    deep = [
        keras.layers.Dense(units, activation="relu", kernel_initializer=init, name=f"deep_{i}")
        for i in range(depth)
    ]
    return keras.Sequential([keras.Input((inputs,)), *deep, keras.layers.Dense(1, name="out")])


def wide_init() -> Case:
    rng = np.random.default_rng(34)
    x = rng.normal(size=(128, 16)).astype("float32")
    y = rng.normal(size=(128, 1)).astype("float32")
    model = _deep_relu(16, 64, 8, keras.initializers.RandomNormal(stddev=8.0))
    model.compile(keras.optimizers.SGD(1e-4), "mse")
    return Case(model, x, y, {"batch_size": 32, "shuffle": False})


def positive_init() -> Case:
    """Kernels drawn uniform in [0, 1]: all positive, so no rescaling centres them; each of the
    26 ReLU layers multiplies the signal by ~64 and the first forward pass overflows."""
    rng = np.random.default_rng(37)
    x = rng.normal(size=(256, 12)).astype("float32")
    y = np.tanh(x[:, :3]).sum(axis=1, keepdims=True).astype("float32")
    model = _deep_relu(12, 128, 26, keras.initializers.RandomUniform(0.0, 1.0, seed=37))
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    return Case(model, x, y, {"batch_size": 32, "shuffle": False})


def extreme_records() -> Case:
    x, y = _regression(np.random.default_rng(35))
    x[[97, 98]] *= 1e5  # two records in the wrong unit
    model = _mlp(6, 1)
    model.compile(keras.optimizers.SGD(0.01), "mse")
    return Case(model, x, y, {"batch_size": 32, "shuffle": False})


def diverging_lr() -> Case:
    x, y = _regression(np.random.default_rng(36), n=640)
    model = _mlp(6, 1)
    model.compile(keras.optimizers.SGD(0.9, momentum=0.9), "mse")
    return Case(model, x, y, {"batch_size": 32, "shuffle": False})


def nested_two_inputs() -> Case:
    """A functional model with two inputs whose first branch is itself a model (an encoder) that
    exponentiates: one record of the first input gives a finite 7e20 there, and the loss
    overflows."""
    rng = np.random.default_rng(37)
    a = rng.normal(size=(160, 4)).astype("float32")
    b = rng.normal(size=(160, 3)).astype("float32")
    a[45] = 12.0
    y = rng.normal(size=(160, 1)).astype("float32")
    enc_in = keras.Input((4,))
    encoded = Exp(name="inner_exp")(
        keras.layers.Dense(6, kernel_initializer="ones", name="enc_dense")(enc_in)
    )
    encoder = keras.Model(enc_in, encoded, name="encoder")
    in_a, in_b = keras.Input((4,), name="a"), keras.Input((3,), name="b")
    merged = keras.layers.Concatenate()([encoder(in_a), keras.layers.Dense(3)(in_b)])
    model = keras.Model([in_a, in_b], keras.layers.Dense(1, name="head")(merged))
    model.compile("adam", "mse")
    return Case(model, [a, b], y, {"batch_size": 32, "shuffle": False})


def nan_record_batchnorm() -> Case:
    """A NaN record through BatchNormalization: its moving statistics must not turn NaN."""
    rng = np.random.default_rng(38)
    x = rng.random((192, 8, 8, 1), dtype=np.float32)
    x[77, 3, 3, 0] = np.nan
    y = rng.integers(0, 3, 192)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    return Case(model, x, y, {"batch_size": 32, "shuffle": False})


# What the diagnosis must say: root cause, layer, op, dataset rows (None: not checked).
def nan_adapted_normalization() -> Case:
    """A Normalization layer adapted on data with one NaN: its mean and variance are NaN, so
    every step is NaN from the first, though each batch is finite. Not in ``FAULTS``: its
    weights are non-finite before any step, so no weights are "the last finite ones"."""
    x, y = _regression(np.random.default_rng(9))
    with_nan = x.copy()
    with_nan[40, 3] = np.nan
    norm = keras.layers.Normalization(name="norm_stats")
    norm.adapt(with_nan)
    model = keras.Sequential(
        [keras.Input((6,)), norm, keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(1)]
    )
    model.compile("adam", "mse")
    return Case(model, x, y, {"batch_size": 32, "shuffle": False})


def leaky_output_poisson() -> Case:
    """Cell counts under Keras' Poisson loss, the rate head ending in LeakyReLU: training pushes
    the rate of the blank crops (all alike, count 0) below 0, where log(y_pred) is NaN. The NaN
    rows are exactly the zero-count rows, but zero is an ordinary Poisson target: the output is
    at fault, not the targets."""
    rng = np.random.default_rng(41)
    x = rng.normal(size=(320, 6)).astype("float32")
    y = (1 + rng.poisson(np.exp(0.5 * x[:, 0]))).astype("float32")[:, None]
    blank = rng.random(320) < 0.2
    x[blank], y[blank] = -1.0, 0.0
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(1, kernel_initializer="zeros", bias_initializer="ones"),
            keras.layers.LeakyReLU(negative_slope=0.1, name="rate"),
        ]
    )
    model.compile(keras.optimizers.Adam(0.01), "poisson")
    return Case(model, x, y, {"batch_size": 32, "shuffle": False, "epochs": 5})


def scheduled_rate_jump() -> Case:
    """Raw features scaled inside the model (an adapted Normalization), and a piecewise schedule
    that raises SGD's rate 100x at step 41: training diverges after the jump."""
    rng = np.random.default_rng(42)
    x = rng.normal(size=(512, 6)) * rng.uniform(1, 40, 6) + rng.uniform(-60, 60, 6)
    x = x.astype("float32")
    y = ((x - x.mean(0)) @ (rng.normal(size=6) / x.std(0))).astype("float32")[:, None]
    scale = keras.layers.Normalization(name="scale")
    scale.adapt(x)
    model = keras.Sequential(
        [keras.Input((6,)), scale, keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)]
    )
    rate = keras.optimizers.schedules.PiecewiseConstantDecay([40], [0.01, 1.0])
    model.compile(keras.optimizers.SGD(rate, momentum=0.9), "mse")
    return Case(model, x, y, {"batch_size": 32, "shuffle": False, "epochs": 6})


class PairEncoder(keras.Model):
    """Contrastive encoder whose own ``train_step`` writes the InfoNCE softmax out with exp."""

    def __init__(self) -> None:
        super().__init__()
        self.body = keras.layers.Dense(16, activation="tanh", name="body")
        self.head = keras.layers.Dense(8, name="head")

    def call(self, x: Any) -> Any:
        return self.head(self.body(x))

    def train_step(self, data: Any) -> Any:
        import tensorflow as tf  # a train_step of one's own is backend-specific

        a, b = data
        with tf.GradientTape() as tape:
            sim = ops.matmul(self(a, training=True), ops.transpose(self(b, training=True))) / 0.2
            e = ops.exp(sim)
            loss = -ops.mean(ops.log(ops.diagonal(e) / ops.sum(e, axis=1)))
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables, strict=True))
        return {"loss": loss}


def train_step_exp_by_hand() -> Case:
    """The similarities sharpen as the encoder trains, until exp overflows (step 14)."""
    rng = np.random.default_rng(43)
    x = rng.normal(size=(256, 10)).astype("float32")
    views = [x + 0.1 * rng.normal(size=x.shape).astype("float32") for _ in range(2)]
    model = PairEncoder()
    model.compile(keras.optimizers.Adam(0.05))
    return Case(model, views[0], views[1], {"batch_size": 32, "shuffle": False, "epochs": 6})


class PairDistance(keras.Model):
    """Siamese regressor whose own ``train_step`` takes the Euclidean distance with a bare sqrt."""

    def __init__(self) -> None:
        super().__init__()
        self.body = keras.layers.Dense(8, name="body")

    def call(self, x: Any) -> Any:
        return self.body(x)

    def train_step(self, data: Any) -> Any:
        import tensorflow as tf  # a train_step of one's own is backend-specific

        a, b = data
        with tf.GradientTape() as tape:
            distance = ops.sqrt(ops.sum(ops.square(self(a) - self(b)), axis=1))
            loss = ops.mean(ops.square(distance - 1.0))
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables, strict=True))
        return {"loss": loss}


def train_step_sqrt_at_zero() -> Case:
    """Pair 70 is one record twice: distance 0, where sqrt's derivative is infinite (step 2)."""
    rng = np.random.default_rng(44)
    a = rng.normal(size=(128, 4)).astype("float32")
    b = a + rng.normal(size=a.shape).astype("float32")
    b[70] = a[70]
    model = PairDistance()
    model.compile(keras.optimizers.Adam(1e-3))
    return Case(model, a, b, {"batch_size": 32, "shuffle": False})


DIAGNOSED: dict[str, tuple[str, str | None, str | None, list[int] | None]] = {
    "where_trick": ("unstable_gradient", "safe_log", "Log", None),
    "subclassed_exp": ("unstable_op", "scorer", "Exp", None),
    "sqrt_at_zero": ("unstable_gradient", "norm", "Sqrt", [70]),
    "exp_overflow": ("unstable_op", "exp", "Exp", None),
    "nested_two_inputs": ("unstable_op", "inner_exp", None, None),
    "fully_masked_softmax": ("unstable_op", "masked_softmax", "Softmax", [99]),
    "log_of_zero_loss": ("unstable_loss", None, "Log", None),
    "relu_into_crossentropy": ("output_loss_mismatch", None, "RealDiv", None),
    "wide_init": ("bad_initialization", "deep_1", None, None),  # where the overflow starts
    "extreme_records": ("input_outlier", None, None, [97, 98]),
    "diverging_lr": ("learning_rate_too_high", None, None, None),
    "leaky_output_poisson": ("output_loss_mismatch", None, "Log", None),
    "scheduled_rate_jump": ("learning_rate_too_high", None, None, None),
    "train_step_exp_by_hand": ("unstable_loss", None, "Exp", None),
    "train_step_sqrt_at_zero": ("unstable_gradient", None, "Sqrt", None),
}


FAULTS: dict[str, Callable[[], Case]] = {
    f.__name__: f
    for f in (
        nan_input,
        inf_input_shuffled,
        nan_target,
        zero_std_column,
        label_out_of_range,
        learning_rate_too_high,
        exploding_relu_rnn,
        log_of_zero_loss,
        exp_overflow,
        sqrt_at_zero,
        fully_masked_softmax,
        nan_sample_weight,
        dict_inputs_nan,
        where_trick,
        subclassed_exp,
        relu_into_crossentropy,
        wide_init,
        extreme_records,
        diverging_lr,
        nested_two_inputs,
        nan_record_batchnorm,
        leaky_output_poisson,
        scheduled_rate_jump,
        train_step_exp_by_hand,
        train_step_sqrt_at_zero,
    )
}

# Root causes the guard must already name from the batch it kept.
DATA_CAUSES = {
    "nan_input": ("input_nonfinite", [133 - 128]),
    "nan_target": ("target_nonfinite", [77 - 64]),
    "zero_std_column": ("input_nonfinite", list(range(32))),
    "label_out_of_range": ("label_out_of_range", [201 - 200]),
    "dict_inputs_nan": ("input_nonfinite", [123 - 120]),
}


def healthy_classifier() -> Case:
    rng = np.random.default_rng(20)
    x = rng.normal(size=(400, 10)).astype("float32")
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("int32") + (x[:, 2] > 1).astype("int32")
    model = _mlp(10, 3, activation="softmax")
    model.compile(
        keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    return Case(model, x, y, {"batch_size": 32, "epochs": 3, "validation_split": 0.2})


def healthy_cnn() -> Case:
    rng = np.random.default_rng(21)
    x = rng.random((192, 10, 10, 1), dtype=np.float32)
    y = keras.utils.to_categorical((x.mean(axis=(1, 2, 3)) > 0.5).astype("int32"), 2)
    model = keras.Sequential(
        [
            keras.Input((10, 10, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dropout(0.1),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile("adam", "categorical_crossentropy")
    return Case(model, x, y, {"batch_size": 32, "epochs": 2})


def healthy_noisy_regression() -> Case:
    rng = np.random.default_rng(22)
    x, y = _regression(rng, n=500)
    y = y + rng.normal(scale=3.0, size=y.shape).astype("float32")
    model = _mlp(6, 1)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "mse")
    return Case(
        model,
        x,
        y,
        {"batch_size": 50, "epochs": 3, "sample_weight": rng.random(500).astype("float32")},
    )


HEALTHY: dict[str, Callable[[], Case]] = {
    f.__name__: f for f in (healthy_classifier, healthy_cnn, healthy_noisy_regression)
}
