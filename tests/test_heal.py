"""``policy="heal"`` on real Keras training: the run survives its NaN and goes on converging."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from conftest import fit_guarded, fit_reference
from faults import (
    Case,
    _mlp,
    _regression,
    diverging_lr,
    extreme_records,
    label_out_of_range,
    log_of_zero_loss,
    nan_adapted_normalization,
    nan_input,
    positive_init,
    wide_init,
    zero_std_column,
)

SCRIPTS = Path(__file__).parent / "scripts"


def _finite(model: keras.Model) -> bool:
    return all(np.isfinite(w).all() for w in model.get_weights())


def _heal(build: Any, epochs: int = 4, **guard: Any) -> tuple[Any, Case]:
    def longer() -> Case:
        case = build()
        case.fit = {**case.fit, "epochs": epochs}
        return case

    # Polling after every batch makes the paused steps, and so the run, deterministic.
    return fit_guarded(longer, policy="heal", poll_interval=0.0, **guard)


def _heal_lines(incident: Any) -> list[str]:
    return [e for e in incident.evidence if e.startswith("heal:")]


def learnable_labels_out_of_range() -> Case:
    """Four classes a linear teacher assigns (so the loss can fall), one label of 4."""
    case = label_out_of_range()
    teacher = np.random.default_rng(40).normal(size=(8, 4))
    case.y = np.argmax(case.x @ teacher, axis=1)
    case.y[201] = 4
    return case


@pytest.mark.parametrize(
    ("build", "rows"),
    [(nan_input, [133]), (learnable_labels_out_of_range, [201])],
    ids=["nan", "label"],
)
def test_bad_records_are_quarantined_and_the_run_heals(build: Any, rows: list[int], tmp_path):
    ref, _ = fit_reference(build)
    assert ref.first_bad is not None  # goes NaN (or raises) without nanguard

    quarantine = tmp_path / "quarantine.jsonl"
    case = build()
    guard, case = _heal(build, data=case.x, quarantine_file=quarantine)
    run = guard.report.runs[0]
    assert run.status == "healed"
    assert len(run.incidents) == 1  # later epochs never meet the record again
    incident = run.incidents[0]
    assert (incident.step, incident.action) == (ref.first_bad, "quarantined")
    assert incident.dataset_indices == rows
    assert "for the rest of the run" in _heal_lines(incident)[0]
    assert len(run.epoch_losses) == 4 and run.epoch_losses[-1] < run.epoch_losses[0]
    assert _finite(case.model)
    listed = [json.loads(line) for line in quarantine.read_text().splitlines()]
    assert [r["dataset_rows"] for r in listed] == [rows]


def test_no_batch_is_lost_to_the_pause_between_polls() -> None:
    """A bad step pauses the graph until the host heals; with polls 5 s apart every batch of
    the run would run paused after it. The host looks after every batch, so all 40 train."""
    case = nan_input()
    case.fit = {**case.fit, "epochs": 4}
    guard, case = fit_guarded(lambda: case, policy="heal", poll_interval=5.0)
    run = guard.report.runs[0]
    assert [(i.step, i.action) for i in run.incidents] == [(4, "quarantined")]
    assert (run.status, run.steps) == ("healed", 40)


def test_outliers_that_already_moved_the_weights_are_quarantined_and_undone() -> None:
    """Rows 97 and 98 (x1e5) pass with a finite loss that ruins the weights; the NaN comes
    later, in batches without them: heal names them from the data and rolls back."""
    case = extreme_records()
    guard, case = _heal(extreme_records, data=case.x)
    run = guard.report.runs[0]
    assert run.status == "healed"
    incident = run.incidents[0]
    assert (incident.root_cause, incident.action) == ("input_outlier", "quarantined")
    assert incident.dataset_indices == [97, 98]
    assert "rolling back to the state before step 0" in _heal_lines(incident)[0]
    assert len(run.incidents) == 1
    assert run.epoch_losses[-1] < 1.0 and _finite(case.model)


def test_a_diverging_learning_rate_is_rolled_back_lowered_and_clipped() -> None:
    ref, _ = fit_reference(diverging_lr)
    assert ref.first_bad is not None
    guard, case = _heal(diverging_lr)
    run = guard.report.runs[0]
    assert run.status == "healed"
    first = run.incidents[0]
    assert (first.root_cause, first.action) == ("learning_rate_too_high", "rolled_back")
    said = " ".join(_heal_lines(first))
    assert "learning rate x0.3 of its base" in said and "gradients clipped" in said
    # The factor applies inside the update only: the optimizer's own rate is the user's.
    assert float(case.model.optimizer.learning_rate) == pytest.approx(0.9)
    assert run.epoch_losses[-1] < 0.5 and _finite(case.model)


def test_a_learning_rate_schedule_is_scaled_not_replaced() -> None:
    def scheduled() -> Case:
        case = diverging_lr()
        schedule = keras.optimizers.schedules.ExponentialDecay(0.9, 1000, 0.9)
        case.model.compile(keras.optimizers.SGD(schedule, momentum=0.9), "mse")
        return case

    guard, case = _heal(scheduled)
    run = guard.report.runs[0]
    assert run.status == "healed"
    assert run.incidents[0].action == "rolled_back"
    assert isinstance(
        case.model.optimizer._learning_rate, keras.optimizers.schedules.ExponentialDecay
    )
    assert _finite(case.model)


def test_a_too_wide_initializer_is_rescaled_in_the_initial_weights() -> None:
    ref, _ = fit_reference(wide_init)
    assert ref.first_bad is not None
    guard, case = _heal(wide_init)
    run = guard.report.runs[0]
    assert run.status == "healed"
    incident = run.incidents[0]
    assert (incident.root_cause, incident.action) == ("bad_initialization", "rolled_back")
    assert "kernels rescaled to the Glorot/He scale: deep_0 x0.043" in _heal_lines(incident)[0]
    assert len(run.incidents) == 1 and _finite(case.model)


def test_an_all_positive_initializer_is_redrawn_at_the_he_scale_before_relu() -> None:
    ref, _ = fit_reference(positive_init)
    assert ref.first_bad == 0
    guard, case = _heal(positive_init)
    run = guard.report.runs[0]
    assert run.status == "healed"
    incident = run.incidents[0]
    assert (incident.root_cause, incident.action) == ("bad_initialization", "rolled_back")
    redrawn = "kernels drawn afresh: deep_0 (HeUniform), deep_1 (HeUniform)"
    assert redrawn in _heal_lines(incident)[0]
    assert run.epoch_losses[-1] < run.epoch_losses[0] and _finite(case.model)


def test_weights_non_finite_from_the_start_stop_at_once_without_futile_rollbacks() -> None:
    ref, _ = fit_reference(nan_adapted_normalization)
    assert ref.first_bad == 0
    guard, case = _heal(nan_adapted_normalization)
    run = guard.report.runs[0]
    assert (run.status, run.steps) == ("stopped", 1)
    [incident] = run.incidents
    assert (incident.root_cause, incident.action) == ("bad_initialization", "stopped")
    assert "no finite state to roll back to" in _heal_lines(incident)[0]
    for got, before in zip(case.model.get_weights(), ref.before_bad, strict=True):
        np.testing.assert_array_equal(got, before)


def test_a_cause_only_code_fixes_is_skipped_once_then_stops() -> None:
    guard, case = _heal(log_of_zero_loss)
    run = guard.report.runs[0]
    assert run.status == "stopped"
    first, second = run.incidents[:2]
    assert (first.root_cause, first.action) == ("unstable_loss", "skipped")
    assert (second.root_cause, second.action) == ("unstable_loss", "stopped")
    assert "only a code change fixes this" in _heal_lines(second)[0]
    assert _finite(case.model)


def test_a_nan_storm_ends_in_bounded_time_with_the_reason() -> None:
    """A zero-std column makes every sample NaN: quarantine would drop all the data."""
    guard, case = _heal(zero_std_column, epochs=20)
    run = guard.report.runs[0]
    assert run.status == "stopped"
    assert run.steps < 20  # of 160
    incident = run.incidents[-1]
    assert incident.action == "stopped"
    assert "the data itself is broken" in _heal_lines(incident)[-1]
    assert _finite(case.model)


def test_quarantine_works_on_a_tf_data_pipeline() -> None:
    import tensorflow as tf

    x, y = _regression(np.random.default_rng(0))
    x[133, 2] = np.nan
    keras.utils.set_random_seed(0)
    model = _mlp(6, 1, hidden="tanh")
    model.compile("adam", "mse")
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(320, seed=1).batch(32)
    import nanguard

    guard = nanguard.Guard("heal", verbose=False, poll_interval=0.0)
    model.fit(data, epochs=3, verbose=0, callbacks=[guard])
    run = guard.report.runs[0]
    assert run.status == "healed" and len(run.incidents) == 1
    assert run.incidents[0].action == "quarantined"
    assert _finite(model)


def test_mixed_precision_overflow_moves_the_model_to_float32() -> None:
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(256, 8)).astype("float32")
        x[150] *= 30000.0  # past float16 in the second layer, finite in float32
        y = rng.normal(size=(256, 1)).astype("float32")
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [
                keras.Input((8,)),
                keras.layers.Dense(32, activation="relu"),
                keras.layers.Dense(32, kernel_initializer=keras.initializers.Constant(1.0)),
                keras.layers.Dense(1, dtype="float32"),
            ]
        )
        model.compile(keras.optimizers.Adam(1e-3), "mse")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    import nanguard

    guard = nanguard.Guard("heal", verbose=False, poll_interval=0.0)
    model.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0, callbacks=[guard])
    run = guard.report.runs[0]
    incident = run.incidents[0]
    assert (incident.root_cause, incident.action) == ("float16_overflow", "skipped")
    assert "compute in float32" in _heal_lines(incident)[0]
    assert len(run.incidents) == 1
    assert all(layer.compute_dtype == "float32" for layer in model.layers)
    assert _finite(model)


def test_nanguard_run_heals_a_script_and_lists_the_quarantine(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "nanguard",
            "run",
            "--policy",
            "heal",
            "--quiet",
            "--report",
            str(tmp_path),
            str(SCRIPTS / "fit_nan.py"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "finite=True" in out.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    run = report["runs"][0]
    assert (run["policy"], run["status"]) == ("heal", "healed")
    assert run["incidents"][0]["action"] == "quarantined"
    listed = [json.loads(line) for line in (tmp_path / "quarantine.jsonl").read_text().splitlines()]
    assert listed[0]["dataset_rows"] == [70]
