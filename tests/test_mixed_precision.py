"""Under mixed_float16 the guard leaves Keras' loss scaling alone and catches real overflow."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import Reference

import nanguard


@pytest.fixture
def mixed_float16():
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def _model(scale: float) -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(32, kernel_initializer=keras.initializers.Constant(scale)),
            keras.layers.Dense(1, dtype="float32"),
        ]
    )
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    return model


def _data(peak: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    x[150] *= peak
    return x, rng.normal(size=(256, 1)).astype("float32")


def test_loss_scaler_skips_are_not_incidents(mixed_float16) -> None:
    keras.utils.set_random_seed(0)
    model = _model(0.05)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    guard = nanguard.Guard(verbose=False)
    x, y = _data(1.0)
    model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[guard])
    run = guard.report.runs[0]
    assert run.status == "completed" and run.incidents == []
    assert np.isfinite(run.epoch_losses).all()


def test_float16_overflow_caught_at_its_step(mixed_float16) -> None:
    x, y = _data(30000.0)
    keras.utils.set_random_seed(0)
    ref = Reference()
    _model(1.0).fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0, callbacks=[ref])
    assert ref.first_bad == 4  # row 150 overflows float16 in the second Dense

    keras.utils.set_random_seed(0)
    model = _model(1.0)
    guard = nanguard.Guard(verbose=False)
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0, callbacks=[guard])
    incident = guard.report.runs[0].incidents[0]
    assert incident.step == 4
    assert incident.root_cause == "float16_overflow"
    assert (incident.layer, incident.samples) == (model.layers[1].name, [150 - 128])
    assert all(np.isfinite(w).all() for w in model.get_weights())
    for got, expected in zip(model.get_weights(), ref.before_bad, strict=True):
        np.testing.assert_array_equal(got, expected)


class Norm(keras.layers.Layer):
    def call(self, x):
        return keras.ops.sqrt(keras.ops.sum(keras.ops.square(x), axis=-1, keepdims=True))


def test_a_loss_scaler_stuck_on_skipping_is_an_incident(mixed_float16) -> None:
    """Every batch has a zero row: its gradient is 0/0 whatever the scale; 25 skips end it."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1280, 4)).astype("float32")
    x[::16] = 0.0
    y = rng.normal(size=(1280, 1)).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(4, use_bias=False),
            Norm(),
            keras.layers.Dense(1, dtype="float32"),
        ]
    )
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    before = model.get_weights()
    guard = nanguard.Guard(verbose=False)
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0, callbacks=[guard])
    run = guard.report.runs[0]
    incident = run.incidents[0]
    assert (run.status, incident.step, incident.symptom) == ("stopped", 24, "nonfinite_gradient")
    assert incident.root_cause == "unstable_gradient"
    for got, expected in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(got, expected)  # the scaler skipped every update
