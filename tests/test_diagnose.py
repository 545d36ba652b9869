"""The diagnosis on real Keras training: root cause, layer, op and data rows, from the replay."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import fit_guarded, fit_reference
from faults import DIAGNOSED, FAULTS, nan_adapted_normalization, nan_input
from test_custom_loop import _guarded

import nanguard
from nanguard.contract import ROOT_CAUSES


def _guard_with_data(name: str) -> nanguard.Report:
    keras.utils.set_random_seed(0)
    data = FAULTS[name]().x  # the same arrays the guarded run trains on (fixed seeds)
    guard, _ = fit_guarded(FAULTS[name], data=data)
    return guard.report


@pytest.mark.parametrize("name", sorted(DIAGNOSED))
def test_cause_layer_op_and_rows(name: str) -> None:
    cause, layer, op, rows = DIAGNOSED[name]
    incident = _guard_with_data(name).runs[0].incidents[0]
    assert (incident.root_cause, incident.layer, incident.op) == (cause, layer, op), (
        incident.evidence
    )
    if rows is not None:
        assert incident.dataset_indices == rows
    assert incident.evidence and incident.fixes
    assert "op op" not in " ".join(incident.fixes)  # an op not named is not called "op"
    assert all(a.root_cause in ROOT_CAUSES for a in incident.alternatives)
    assert incident.diagnosis_seconds < 30  # a sanity bound, not a benchmark


def test_nan_statistics_of_an_adapted_layer_are_named_as_its_weights() -> None:
    ref, _ = fit_reference(nan_adapted_normalization)
    assert ref.first_bad == 0  # every batch is finite; the adapted mean and variance are not
    guard, case = fit_guarded(nan_adapted_normalization)
    run = guard.report.runs[0]
    assert (run.status, run.steps) == ("stopped", 1)
    incident = run.incidents[0]
    assert (incident.step, incident.root_cause, incident.layer) == (
        0,
        "bad_initialization",
        "norm_stats",
    )
    text = " ".join(incident.evidence)
    assert "norm_stats/mean (1 of 6 values non-finite)" in text and "adapt" in text
    assert "adapt it on finite rows" in incident.fixes[0]
    for got, before in zip(case.model.get_weights(), ref.before_bad, strict=True):
        np.testing.assert_array_equal(got, before)  # the step changed nothing


def test_weights_are_said_finite_before_a_bad_record_only_when_they_were() -> None:
    def bad_record_too() -> Any:
        case = nan_adapted_normalization()
        case.x[5, 0] = np.nan
        return case

    for build, said in (
        (nan_input, "the model's weights were finite before this step"),
        (bad_record_too, "held non-finite values before this step already: norm_stats/mean"),
    ):
        guard, _ = fit_guarded(build)
        incident = guard.report.runs[0].incidents[0]
        assert incident.root_cause == "input_nonfinite"
        assert any(said in line for line in incident.evidence), incident.evidence


def test_where_trick_names_the_masked_op_and_samples() -> None:
    incident = _guard_with_data("where_trick").runs[0].incidents[0]
    text = " ".join(incident.evidence)
    assert "discarded" in text and "Log" in text
    assert incident.samples  # the samples whose gradient is non-finite
    assert "double-where" in incident.fixes[0]


def test_replay_leaves_the_model_as_it_was() -> None:
    # `where_trick` has a BatchNormalization layer: the replay runs it in training mode, which
    # would move its statistics; the fault test checks every weight against an unguarded run,
    # and here the statistics are checked against their values before the replay.
    from nanguard.diagnose.replay import replay_step

    keras.utils.set_random_seed(0)
    case = FAULTS["where_trick"]()
    case.model.fit(case.x[:16], case.y[:16], verbose=0, epochs=1)
    before = [w.copy() for w in case.model.get_weights()]
    replay = replay_step(case.model, case.x[:32], case.y[:32])
    assert replay.culprit is not None
    for got, expected in zip(case.model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(got, expected)
    assert "call" not in case.model.get_layer("safe_log").__dict__


def test_tf_data_pipeline_rows_are_named_through_shuffle() -> None:
    keras.utils.set_random_seed(0)
    case = nan_input()
    dataset = tf.data.Dataset.from_tensor_slices((case.x, case.y)).shuffle(320, seed=3).batch(32)
    guard = nanguard.Guard(verbose=False, data=dataset)
    case.model.fit(dataset, epochs=1, verbose=0, callbacks=[guard])
    incident = guard.report.runs[0].incidents[0]
    assert incident.root_cause == "input_nonfinite"
    assert incident.dataset_indices == [133]
    assert incident.features == [2]


def test_hand_written_loop_names_model_and_dataset_row() -> None:
    report, model, _ = _guarded("stop", bad_row=77)
    run = report.runs[0]
    assert run.model == model.name
    incident = run.incidents[0]
    assert incident.root_cause == "input_nonfinite"
    assert incident.dataset_indices == [77]
    assert incident.features == [2 * 6 + 3]


def test_hand_written_loop_replays_with_its_loss() -> None:
    # A relu output into the loop's categorical cross-entropy: the loss object the loop called
    # is what the replay needs to say so.
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(128, 8)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 3, 128), 3)
    from nanguard.guard.session import Session

    session = Session("stop", verbose=False)
    session.install()
    try:
        model = keras.Sequential(
            [
                keras.Input((8,)),
                keras.layers.Dense(16, activation="relu"),
                keras.layers.Dense(3, activation="relu"),
            ]
        )
        optimizer = keras.optimizers.Adam(0.01)
        loss_fn = keras.losses.CategoricalCrossentropy()
        error = None
        try:
            for start in range(0, 128, 32):
                with tf.GradientTape() as tape:
                    loss = loss_fn(y[start : start + 32], model(x[start : start + 32]))
                grads = tape.gradient(loss, model.trainable_variables)
                optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        except Exception as exc:
            error = exc
    finally:
        session.uninstall()
    incident = session.finish(error).runs[0].incidents[0]
    assert incident.root_cause == "output_loss_mismatch"
    assert incident.op == "RealDiv"
