"""``val_loss: nan`` while training is fine: the guard names the bad validation rows.

Each scenario is first trained without nanguard, to show its validation loss really is not
finite while its training loss is.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from faults import nan_adapted_normalization

import nanguard

EPOCHS, BATCH = 2, 32
TRAIN_ROWS = 256


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(TRAIN_ROWS, 4)).astype("float32")
    xv = rng.normal(size=(96, 4)).astype("float32")
    return x, np.abs(x[:, :1]) * 2, xv, np.abs(xv[:, :1]) * 2


def _log_error(y_true: Any, y_pred: Any) -> Any:
    """A hand-written squared log error: NaN for a target below -1."""
    ops = keras.ops
    return ops.mean(ops.square(ops.log(y_true + 1.0) - ops.log(ops.abs(y_pred) + 1.0)), axis=-1)


def _scenario(name: str) -> tuple[Any, Any, dict[str, Any], Any, str | None]:
    """(x, y, fit's validation arguments, loss, hidden activation) of a scenario."""
    x, y, xv, yv = _data()
    if name == "nan_feature":
        xv[7, 2] = np.nan
        return x, y, {"validation_data": (xv, yv)}, "mse", "tanh"
    if name == "validation_split":
        x[TRAIN_ROWS - 10, 1] = np.nan  # the split's last 52 rows start at row 204
        return x, y, {"validation_split": 0.2}, "mse", "tanh"
    if name == "tf_data":
        xv[50, 0] = np.nan
        data = tf.data.Dataset.from_tensor_slices((xv, yv)).batch(BATCH)
        return x, y, {"validation_data": data}, "mse", "tanh"
    if name == "target_outside_loss":
        yv[11, 0] = -5.0
        return x, y, {"validation_data": (xv, yv)}, _log_error, "tanh"
    if name == "overflowing_input":
        xv[3, 0] = 3e38  # a linear model's output stays finite; its square does not
        return x, y, {"validation_data": (xv, yv)}, "mse", None
    assert name == "healthy"
    return x, y, {"validation_data": (xv, yv)}, "mse", "tanh"


def _fit(name: str, guard: nanguard.Guard | None) -> Any:
    x, y, validation, loss, activation = _scenario(name)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation=activation), keras.layers.Dense(1)]
    )
    model.compile("adam", loss)
    callbacks = [] if guard is None else [guard]
    return model.fit(
        x, y, epochs=EPOCHS, batch_size=BATCH, verbose=0, callbacks=callbacks, **validation
    )


EXPECTED = {  # scenario: (warning code, what the message must name)
    "nan_feature": ("input_nonfinite", "in feature 2: rows 7;"),
    "validation_split": (
        "input_nonfinite",
        "from row 204 on, so add that to each row), 1 non-"
        "finite or missing value(s) in feature 1: rows 42;",
    ),
    "tf_data": ("input_nonfinite", "in feature 0: rows 50;"),
    "target_outside_loss": ("invalid_target", "not finite on rows 11 while"),
    "overflowing_input": ("input_outlier", "extreme on rows 3 "),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_nonfinite_validation_loss_is_explained_once(name: str, capsys: Any) -> None:
    plain = _fit(name, None).history
    assert all(np.isfinite(plain["loss"])) and not any(np.isfinite(plain["val_loss"]))

    guard = nanguard.Guard(preflight=False)
    history = _fit(name, guard).history
    np.testing.assert_array_equal(history["loss"], plain["loss"])  # training untouched
    run = guard.report.runs[0]
    assert (run.status, run.incidents) == ("completed", [])
    code, named = EXPECTED[name]
    [warning] = run.warnings  # one look, at the first epoch, however many epochs are NaN
    assert (warning.code, warning.severity) == (code, "critical")
    assert warning.message.startswith("val_loss is ") and named in warning.message
    rows = 204 if name == "validation_split" else TRAIN_ROWS
    assert warning.step == math.ceil(rows / BATCH) - 1  # the last step of the first epoch
    err = capsys.readouterr().err
    assert err.count(code) == 1 and err.rstrip().endswith("; 1 warning")


def test_a_nan_target_of_one_output_is_named_with_its_output() -> None:
    x, y, xv, yv = _data()
    yv_b = xv[:, 1:2].copy()
    yv_b[9] = np.nan

    def fit(guard: nanguard.Guard | None) -> Any:
        keras.utils.set_random_seed(0)
        inputs = keras.Input((4,))
        hidden = keras.layers.Dense(8, activation="tanh")(inputs)
        outputs = {name: keras.layers.Dense(1, name=name)(hidden) for name in ("a", "b")}
        model = keras.Model(inputs, outputs)
        model.compile("adam", {"a": "mse", "b": "mse"})
        return model.fit(
            x,
            {"a": y, "b": x[:, 1:2]},
            validation_data=(xv, {"a": yv, "b": yv_b}),
            epochs=EPOCHS,
            verbose=0,
            callbacks=[] if guard is None else [guard],
        ).history

    plain = fit(None)
    assert np.isfinite(plain["val_a_loss"]).all() and not np.isfinite(plain["val_b_loss"]).any()
    guard = nanguard.Guard(preflight=False, verbose=False)
    fit(guard)
    [warning] = guard.report.runs[0].warnings
    assert warning.code == "target_nonfinite"
    assert "(targets of output 'b'), 1 non-finite or missing label(s): rows 9;" in warning.message


@pytest.mark.parametrize(
    "fault, named",
    [
        ("nan_second_input", "1 non-finite or missing value(s) in feature input 1[2]: rows 5;"),
        ("target_outside_loss", "not finite on rows 11 while"),
    ],
)
def test_several_inputs_given_as_a_list_are_looked_into(fault: str, named: str) -> None:
    """``validation_data=([x_a, x_b], y)``: the audit reads each input (the NaN case), and the
    evaluation slices them together (a target the loss cannot take)."""
    x, y, xv, yv = _data()
    xv_b = xv[:, ::-1].copy()
    if fault == "nan_second_input":
        xv_b[5, 2] = np.nan
    else:
        yv[11, 0] = -5.0

    def fit(guard: nanguard.Guard | None) -> Any:
        keras.utils.set_random_seed(0)
        a, b = keras.Input((4,)), keras.Input((4,))
        hidden = keras.layers.Dense(8, activation="tanh")(keras.layers.Concatenate()([a, b]))
        model = keras.Model([a, b], keras.layers.Dense(1)(hidden))
        model.compile("adam", _log_error)
        return model.fit(
            [x, x[:, ::-1]],
            y,
            validation_data=([xv, xv_b], yv),
            epochs=EPOCHS,
            verbose=0,
            callbacks=[] if guard is None else [guard],
        ).history

    plain = fit(None)
    assert np.isfinite(plain["loss"]).all() and not np.isfinite(plain["val_loss"]).any()
    guard = nanguard.Guard(preflight=False, verbose=False)
    fit(guard)
    [warning] = guard.report.runs[0].warnings
    assert named in warning.message


def test_finite_validation_loss_adds_no_warning() -> None:
    guard = nanguard.Guard(preflight=False, verbose=False)
    history = _fit("healthy", guard).history
    assert all(np.isfinite(history["val_loss"]))
    assert guard.report.runs[0].warnings == []


def test_a_model_broken_before_training_is_not_blamed_on_validation_rows() -> None:
    # Its adapted mean is NaN: every validation row's loss is NaN, and no row is the reason.
    def fit(guard: nanguard.Guard | None) -> Any:
        keras.utils.set_random_seed(0)
        case = nan_adapted_normalization()
        x_val, y_val = case.x[:64] + 0.1, case.y[:64]
        callbacks = [] if guard is None else [guard]
        return case.model.fit(
            case.x, case.y, validation_data=(x_val, y_val), verbose=0, callbacks=callbacks
        )

    assert not np.isfinite(fit(None).history["val_loss"]).any()
    guard = nanguard.Guard(preflight=False, verbose=False)
    assert not np.isfinite(fit(guard).history["val_loss"]).any()
    run = guard.report.runs[0]
    assert [i.root_cause for i in run.incidents] == ["bad_initialization"]
    assert run.warnings == []
