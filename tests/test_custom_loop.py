"""Hand-written GradientTape loops (the second seed article's), guarded as `nanguard run` does."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

from nanguard.guard.session import Session
from nanguard.probe.halt import TrainingStopped, is_guard_stop


def _loop(bad_row: int | None, *, compiled: bool = True, apply_style: str = "apply_gradients"):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = rng.random((256, 6, 6, 1), dtype=np.float32)
    labels = keras.utils.to_categorical(rng.integers(0, 3, 256), 3)
    if bad_row is not None:
        images[bad_row, 2, 3, 0] = np.nan
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(32)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    optimizer = keras.optimizers.Adam(learning_rate=0.01)
    loss_fn = keras.losses.CategoricalCrossentropy()

    def train_step(images: Any, labels: Any) -> Any:
        with tf.GradientTape() as tape:
            predictions = model(images, training=True)
            loss = loss_fn(labels, predictions)
        gradients = tape.gradient(loss, model.trainable_variables)
        if apply_style == "apply":
            optimizer.apply(gradients, model.trainable_variables)
        else:
            optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return loss

    step = tf.function(train_step) if compiled else train_step

    def train(epochs: int = 2, watch: list | None = None) -> None:
        for _ in range(epochs):
            for x, y in dataset:
                before = [w.copy() for w in model.get_weights()] if watch is not None else None
                loss = step(x, y)
                if watch is not None:
                    watch.append((float(loss), before, model.get_weights()))

    return model, train


def _unguarded_first_bad(bad_row: int, **kwargs: Any) -> tuple[int, list[np.ndarray]]:
    _, train = _loop(bad_row, **kwargs)
    seen: list = []
    train(watch=seen)
    for i, (loss, before, after) in enumerate(seen):
        if not np.isfinite(loss) or not all(np.isfinite(w).all() for w in after):
            return i, before
    raise AssertionError("the loop was expected to go NaN without nanguard")


def _guarded(policy: str, bad_row: int | None, **kwargs: Any):
    session = Session(policy, verbose=False)
    session.install()
    model, train = _loop(bad_row, **kwargs)
    error = None
    try:
        train()
    except Exception as exc:
        error = exc
    finally:
        session.uninstall()
    return session.finish(error), model, error


@pytest.mark.parametrize("kwargs", [{}, {"compiled": False}, {"apply_style": "apply"}])
def test_loop_stops_at_the_exact_step_with_pre_step_weights(kwargs: dict) -> None:
    first_bad, before = _unguarded_first_bad(100, **kwargs)
    report, model, error = _guarded("stop", 100, **kwargs)
    assert error is not None and is_guard_stop(error)
    run = report.runs[0]
    assert (run.kind, run.status) == ("custom_loop", "stopped")
    incident = run.incidents[0]
    assert incident.step == first_bad == 3
    assert incident.root_cause == "input_nonfinite"
    assert incident.samples == [100 - 96] and incident.features == [2 * 6 + 3]
    for got, expected in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(got, expected)


def test_loop_skip_policy_finishes_with_finite_weights() -> None:
    report, model, error = _guarded("skip", 100)
    assert error is None
    run = report.runs[0]
    assert run.status == "completed" and run.steps == 16
    assert [i.step for i in run.incidents] == [3, 11]  # the bad record, once per epoch
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_healthy_loop_is_untouched() -> None:
    plain_model, train = _loop(None)
    train()
    report, model, error = _guarded("stop", None)
    assert error is None and report.runs[0].incidents == []
    for got, expected in zip(model.get_weights(), plain_model.get_weights(), strict=True):
        np.testing.assert_array_equal(got, expected)


def test_label_out_of_range_in_a_loop_is_caught_before_the_loss_op() -> None:
    """On CPU the loss op would raise, on a GPU give NaN: the guard checks labels first."""
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(48, 4)).astype("float32")
    labels = np.arange(48) % 3
    labels[37] = 5  # three classes
    session = Session("stop", verbose=False)
    session.install()
    try:
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        optimizer = keras.optimizers.SGD(0.1)
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        before = None
        with pytest.raises(TrainingStopped):
            for start in range(0, 48, 16):
                before = [w.copy() for w in model.get_weights()]
                with tf.GradientTape() as tape:
                    loss = loss_fn(labels[start : start + 16], model(x[start : start + 16]))
                grads = tape.gradient(loss, model.trainable_variables)
                optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
    finally:
        session.uninstall()
    incident = session.finish(None).runs[0].incidents[0]
    assert (incident.step, incident.root_cause) == (2, "label_out_of_range")
    assert incident.samples == [37 - 32]
    for got, expected in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(got, expected)


def test_xla_loop_is_guarded_without_asserts() -> None:
    """Under jit_compile the halted loop runs on (XLA drops asserts) but never updates again."""
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    x[40, 1] = np.nan
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    optimizer = keras.optimizers.SGD(0.01)
    session = Session("stop", verbose=False)
    session.install()
    try:

        @tf.function(jit_compile=True)
        def step(xb: Any) -> Any:
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(model(xb)))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply(grads, model.trainable_variables)
            return loss

        snapshots = []
        for i in range(0, 64, 8):
            step(x[i : i + 8])
            snapshots.append([w.copy() for w in model.get_weights()])
    finally:
        session.uninstall()
    run = session.finish().runs[0]
    assert run.status == "stopped" and run.incidents[0].step == 5
    assert all(np.isfinite(w).all() for w in model.get_weights())
    for later in snapshots[5:]:  # the bad step and every one after it changed nothing
        for got, expected in zip(later, snapshots[4], strict=True):
            np.testing.assert_array_equal(got, expected)


def _in_session(loop: Any, guarded: bool) -> tuple[list[float], Any]:
    """Run ``loop(losses)`` as a script would, under ``nanguard run``'s session or not: (the
    losses it recorded, the session's report or None)."""
    session = Session("stop", verbose=False) if guarded else None
    if session is not None:
        session.install()
    losses: list[float] = []
    error = None
    try:
        loop(losses)
    except Exception as exc:  # the guard stops a loop by raising (in graph: an op error)
        if not is_guard_stop(exc):
            raise
        error = exc
    finally:
        if session is not None:
            session.uninstall()
    return losses, (session.finish(error) if session is not None else None)


def test_a_loss_written_inline_that_breaks_is_named_without_a_replay() -> None:
    """An eager loop whose loss is written inline (a Beta likelihood: log(1 - y) for a rate of
    exactly 1 at row 45 is -inf): no loss object to replay, yet the outputs are finite, so the
    loss computation is named, not 'unknown'."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(96, 4)).astype("float32")
    rate = (1 / (1 + np.exp(-x[:, 0]))).astype("float32") * 0.9 + 0.05
    rate[45] = 1.0

    def loop(losses: list[float]) -> None:
        keras.utils.set_random_seed(0)
        inputs = keras.Input((4,))
        shape = keras.layers.Dense(2, activation="softplus", name="concentration")(inputs)
        model = keras.Model(inputs, shape)
        optimizer = keras.optimizers.Adam(1e-3)
        for start in range(0, 96, 16):
            y = rate[start : start + 16]
            with tf.GradientTape() as tape:
                c = model(x[start : start + 16], training=True) + 1e-3
                a, b = c[:, 0], c[:, 1]
                log_beta = tf.math.lgamma(a) + tf.math.lgamma(b) - tf.math.lgamma(a + b)
                nll = -((a - 1) * tf.math.log(y) + (b - 1) * tf.math.log(1 - y) - log_beta)
                loss = tf.reduce_mean(nll)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            losses.append(float(loss))

    plain, _ = _in_session(loop, guarded=False)
    assert np.isfinite(plain[:2]).all() and not np.isfinite(plain[2])  # row 45: step 2
    _, report = _in_session(loop, guarded=True)
    incident = report.runs[0].incidents[0]
    assert (incident.step, incident.root_cause) == (2, "unstable_loss")
    assert [a.root_cause for a in incident.alternatives] == ["invalid_target"]
    assert "written inline" in incident.evidence[1]


def test_the_batch_is_paired_with_its_own_targets_only() -> None:
    """A semi-supervised loop: a Keras loss on a labeled batch, then the model again on an
    unlabeled batch whose entropy, written inline, reaches 0 * log(0) = NaN (step 17). The
    labeled targets are not paired with the unlabeled inputs (that made the replay fail)."""

    def loop(losses: list[float]) -> None:
        rng = np.random.default_rng(6)
        x = rng.normal(size=(64, 4)).astype("float32")
        y = (x[:, 0] > 0).astype("int32")
        unlabeled = rng.normal(size=(256, 4)).astype("float32") * 3
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [keras.Input((4,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(3)]
        )
        optimizer = keras.optimizers.Adam(0.05)
        ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

        @tf.function
        def step(xb: Any, yb: Any, ub: Any) -> Any:
            with tf.GradientTape() as tape:
                loss = ce(yb, model(xb, training=True))
                p = keras.ops.softmax(model(ub, training=True), axis=-1)
                loss += -keras.ops.mean(keras.ops.sum(p * keras.ops.log(p), axis=-1))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            return loss

        for i in range(40):
            labeled, u = slice(i % 4 * 16, i % 4 * 16 + 16), slice(i % 8 * 32, i % 8 * 32 + 32)
            losses.append(float(step(x[labeled], y[labeled], unlabeled[u])))
            if not np.isfinite(losses[-1]):
                break

    plain, _ = _in_session(loop, guarded=False)
    assert len(plain) == 18 and not np.isfinite(plain[-1])  # first non-finite at step 17
    _, report = _in_session(loop, guarded=True)
    incident = report.runs[0].incidents[0]
    assert (incident.step, incident.root_cause) == (17, "unstable_loss")
    assert not any("could not be replayed (" in line for line in incident.evidence)
