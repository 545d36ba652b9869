"""Precursor warnings on real Keras training: each arrives before the NaN it announces.

The guard polls after every train-function call here (``poll_interval=0``) so that "before" is
about when the host saw it, not only the step it names.
"""

from __future__ import annotations

import re

import keras
import pytest
from conftest import fit_guarded, fit_reference
from faults import HEALTHY
from precursors import (
    deep_sigmoid_stack,
    exploding_relu_rnn,
    learning_rate_far_too_high,
    unscaled_inputs_kill_relus,
)

from nanguard.contract import WARNING_CODES


def _warnings(guard, code):
    return [w for w in guard.report.runs[0].warnings if w.code == code]


@pytest.mark.parametrize(
    ("build", "code"),
    [
        (exploding_relu_rnn, "exploding_gradients"),
        (learning_rate_far_too_high, "learning_rate_too_high"),
    ],
)
def test_warning_arrives_before_the_first_nonfinite_step(build, code) -> None:
    ref, _ = fit_reference(build)
    assert ref.first_bad is not None, "the scenario must go NaN without nanguard"

    guard, _ = fit_guarded(build, poll_interval=0, preflight=False)
    run = guard.report.runs[0]
    assert run.incidents
    (warning,) = _warnings(guard, code)
    assert warning.step < ref.first_bad <= run.incidents[0].step
    # Raised by the host before the incident was recorded: it precedes it in the report.
    assert run.warnings.index(warning) == 0 or all(
        w.step <= warning.step for w in run.warnings[: run.warnings.index(warning)]
    )


def test_dead_relus_are_reported_during_a_run_that_never_goes_nan() -> None:
    ref, _ = fit_reference(unscaled_inputs_kill_relus)
    assert ref.first_bad is None

    guard, case = fit_guarded(unscaled_inputs_kill_relus, activation_every=16)
    run = guard.report.runs[0]
    assert run.incidents == [] and run.steps == 64
    dead = {w.layer: w for w in _warnings(guard, "dead_relu")}
    second = dead[case.model.layers[1].name]
    assert second.severity == "critical"
    assert second.step < run.steps - 1  # seen by a sample during the run
    assert "32 of 32" in second.message
    assert _warnings(guard, "unscaled_input")  # and the pre-flight said why


def test_deep_sigmoid_stack_vanishes() -> None:
    guard, case = fit_guarded(deep_sigmoid_stack, poll_interval=0)
    (warning,) = _warnings(guard, "vanishing_gradients")
    assert warning.layer == case.model.layers[0].name  # the layer nearest the input
    assert warning.step < 20


@pytest.mark.parametrize("name", sorted(HEALTHY))
def test_healthy_runs_raise_no_critical_and_at_most_one_warning(name: str) -> None:
    guard, _ = fit_guarded(HEALTHY[name], poll_interval=0, activation_every=5)
    warnings = guard.report.runs[0].warnings
    assert all(w.code in WARNING_CODES for w in warnings)
    assert not [w for w in warnings if w.severity == "critical"], warnings
    assert len([w for w in warnings if w.severity == "warning"]) <= 1, warnings


def test_one_line_per_warning_unless_it_worsens(capfd) -> None:
    keras.utils.set_random_seed(0)
    case = learning_rate_far_too_high()
    import nanguard

    guard = nanguard.Guard(poll_interval=0, preflight=False, summary=False)
    case.model.fit(case.x, case.y, callbacks=[guard], verbose=0, **case.fit)
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if "exploding_gradients:" in line]
    said = [re.match(r"nanguard: (info|warning|critical) at step (\d+) ", line) for line in lines]
    assert lines and all(said)
    severities = [m.group(1) for m in said]
    # Raised once, then one line more only each time its severity rose.
    assert severities == sorted(set(severities), key=["info", "warning", "critical"].index)
    (warning,) = _warnings(guard, "exploding_gradients")
    assert warning.severity == severities[-1] == "critical"
    assert warning.step == int(said[0].group(2))  # the step it started, kept as it evolved
    saved = guard.report.to_dict()["runs"][0]["warnings"]
    assert {"step", "code", "layer", "severity", "message"} == set(saved[0])
