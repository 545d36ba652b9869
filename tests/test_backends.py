"""The guard on Keras' JAX and PyTorch backends: each fault blocked at its exact step.

Keras picks its backend when it is imported, so each backend runs in one subprocess
(tests/scripts/backend_fit.py, with TensorFlow made unimportable there) that trains every
scenario unguarded and guarded and prints what is checked here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).parent / "scripts" / "backend_fit.py"
STOPPED = {"nan_input": 4, "nan_target": 2, "learning_rate_too_high": None}  # step, if known
SPECS = [
    *(f"{name}:stop" for name in STOPPED),
    "nan_input:skip",
    "nan_storm:skip",
    "nan_record_batchnorm:stop",
    "healthy_classifier:stop",
    "nan_validation:stop",
    "nan_checkpoint:stop",
    "overflowing_update:stop",
    "relu_into_crossentropy:stop",
    "heal",
    "audit",
]
# JAX only: there Keras calls the guard from worker threads and polls are seconds apart.
JAX_SPECS = ["late_nan:skip"]


@pytest.fixture(scope="module", params=["jax", "torch"])
def results(request: pytest.FixtureRequest) -> dict[str, Any]:
    backend = request.param
    pytest.importorskip(backend)
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *SPECS, *(JAX_SPECS if backend == "jax" else [])],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert all(line["backend"] == backend for line in lines)
    return {"backend": backend, **{line["spec"]: line for line in lines}}


@pytest.mark.parametrize("name", sorted(STOPPED))
def test_stop_blocks_the_first_bad_step_and_keeps_the_weights_before_it(
    results: dict[str, Any], name: str
) -> None:
    out = results[f"{name}:stop"]
    first_bad = out["reference_first_bad"]
    assert first_bad is not None, f"{name} must go NaN without nanguard"
    assert first_bad == STOPPED[name] or STOPPED[name] is None
    run = out["run"]
    assert (run["status"], run["steps"]) == ("stopped", first_bad + 1)
    (incident,) = run["incidents"]
    assert (incident["step"], incident["epoch"], incident["batch"]) == (first_bad, 0, first_bad)
    assert incident["symptom"] == "nonfinite_loss"
    assert incident["action"] == "stopped"
    assert out["weights_finite"] and out["equal_to_before_bad"]
    assert len(run["epoch_losses"]) == 1 and run["epoch_losses"][0] is not None


def test_data_faults_are_diagnosed_from_the_batch(results: dict[str, Any]) -> None:
    nan_x = results["nan_input:stop"]["run"]["incidents"][0]
    assert (nan_x["root_cause"], nan_x["samples"], nan_x["features"]) == (
        "input_nonfinite",
        [5],
        [2],
    )
    nan_y = results["nan_target:stop"]["run"]["incidents"][0]
    assert (nan_y["root_cause"], nan_y["samples"]) == ("target_nonfinite", [13])
    run = results["learning_rate_too_high:stop"]["run"]
    diverged = run["incidents"][0]
    # Nothing in the batch or the weights explains it: unknown, with the pre-flight's warnings.
    assert diverged["root_cause"] == "unknown"
    assert [(w["step"], w["code"]) for w in run["warnings"]] == [(0, "unscaled_input")]
    assert any(
        line.startswith("pre-flight warned before the first step: unscaled_input")
        for line in diverged["evidence"]
    )
    assert any("TensorFlow backend only" in line for line in diverged["evidence"])


def test_skip_skips_the_bad_batch_and_finishes(results: dict[str, Any]) -> None:
    out = results["nan_input:skip"]
    run = out["run"]
    assert (run["status"], run["steps"]) == ("completed", 10)
    assert [(i["step"], i["action"]) for i in run["incidents"]] == [(4, "skipped")]
    assert out["weights_finite"] and not out["equal_to_before_bad"]  # it trained on
    assert run["epoch_losses"][0] is not None  # the skipped batch is not in Keras' mean


def test_skip_stops_a_nan_storm_within_its_budget(results: dict[str, Any]) -> None:
    out = results["nan_storm:skip"]
    run = out["run"]
    assert (run["status"], run["steps"]) == ("stopped", 4)  # max_consecutive=3
    assert [i["action"] for i in run["incidents"]] == ["skipped"] * 3 + ["stopped"]
    assert [i["step"] for i in run["incidents"]] == [0, 1, 2, 3]
    assert out["weights_finite"] and out["diff_to_before_bad"] == 0.0


def test_batchnorm_statistics_are_put_back_on_a_blocked_step(
    results: dict[str, Any],
) -> None:
    out = results["nan_record_batchnorm:stop"]
    first_bad = out["reference_first_bad"]
    assert first_bad == 2
    assert out["run"]["incidents"][0]["step"] == first_bad
    assert out["run"]["incidents"][0]["root_cause"] == "input_nonfinite"
    # Moving statistics are finite and those of before the step; XLA may fuse the guarded step's
    # moving-variance update differently from Keras' own, hence the last-bit tolerance.
    assert out["weights_finite"] and out["diff_to_before_bad"] < 1e-6


def test_healthy_run_is_untouched(results: dict[str, Any]) -> None:
    out = results["healthy_classifier:stop"]
    run = out["run"]
    assert out["reference_first_bad"] is None
    assert (run["status"], run["incidents"]) == ("completed", [])
    assert run["steps"] == 30 and len(run["epoch_losses"]) == 3
    assert out["equal_to_unguarded"]


def test_nonfinite_validation_loss_names_the_validation_row(results: dict[str, Any]) -> None:
    out = results["nan_validation:stop"]
    run = out["run"]
    assert out["reference_first_bad"] is None and out["equal_to_unguarded"]
    assert (run["status"], run["incidents"]) == ("completed", [])
    [warning] = [w for w in run["warnings"] if w["message"].startswith("val_loss is nan")]
    assert warning["code"] == "input_nonfinite" and "feature 1: rows 7;" in warning["message"]


def test_weights_non_finite_from_the_start_are_named_with_their_layer(
    results: dict[str, Any],
) -> None:
    out = results["nan_checkpoint:stop"]
    assert out["reference_first_bad"] == 0
    (incident,) = out["run"]["incidents"]
    assert (incident["step"], incident["action"]) == (0, "stopped")
    assert (incident["root_cause"], incident["layer"]) == ("bad_initialization", "hidden")
    assert "when training began" in incident["evidence"][0]
    assert "hidden/kernel (1 of 48 values non-finite)" in incident["evidence"][0]
    assert "Give 'hidden' finite weights" in incident["fixes"][0]
    assert not any("last finite" in line for line in incident["evidence"])


def test_an_update_that_overflows_the_weights_is_named(results: dict[str, Any]) -> None:
    """JAX keeps the update out at its step; PyTorch lets it through (it checks the loss and
    gradients before the update) and names it at the next step, from the weights it measures."""
    out = results["overflowing_update:stop"]
    assert out["reference_first_bad"] == 0
    (incident,) = out["run"]["incidents"]
    assert incident["root_cause"] == "learning_rate_too_high"
    assert "Lower the learning rate" in incident["fixes"][0]
    if results["backend"] == "jax":
        assert (incident["step"], incident["symptom"]) == (0, "nonfinite_weights")
        assert "the guard kept that update out" in incident["evidence"][0]
        assert out["weights_finite"] and out["equal_to_before_bad"]
    else:
        assert (incident["step"], incident["symptom"]) == (1, "nonfinite_loss")
        assert "were finite when training began and hold non-finite" in incident["evidence"][0]
        assert "learning rate: 1e+37" in incident["evidence"]
        assert not out["weights_finite"]


def test_an_output_activation_the_loss_cannot_take_is_named_from_the_configuration(
    results: dict[str, Any],
) -> None:
    out = results["relu_into_crossentropy:stop"]
    assert out["reference_first_bad"] is not None
    (incident,) = out["run"]["incidents"]
    assert incident["step"] == out["reference_first_bad"]
    assert incident["root_cause"] == "output_loss_mismatch"
    assert incident["layer"].startswith("dense")  # the output layer
    assert "activation is relu" in incident["fixes"][0]


def test_the_audit_names_a_bad_record_before_training(results: dict[str, Any]) -> None:
    warnings = results["audit"]["run"]["warnings"]
    audited = [w for w in warnings if w["message"].startswith("audit of the first")]
    assert [(w["step"], w["code"]) for w in audited] == [(0, "input_nonfinite")]
    assert "rows 133;" in audited[0]["message"]


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_nanguard_run_guards_every_fit_without_tensorflow(backend: str, tmp_path: Path) -> None:
    """``nanguard run`` on a plain script (TensorFlow made unimportable): its ``fit`` is guarded,
    the one-line note says hand-written loops are not, and nothing else is reported."""
    pytest.importorskip(backend)
    blocked = "import sys; sys.modules['tensorflow'] = None; from nanguard.cli import main; "
    report = tmp_path / "report.json"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            blocked + "sys.exit(main())",
            "run",
            "--json",
            str(report),
            str(SCRIPT.parent / "fit_nan.py"),
            "a",
        ],
        env={**os.environ, "KERAS_BACKEND": backend},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "hand-written training loops are guarded on the TensorFlow backend only" in done.stderr
    assert "finite=True" in done.stdout
    [run] = json.loads(report.read_text())["runs"]
    assert (run["kind"], run["status"], run["steps"]) == ("fit", "stopped", 3)
    assert [(i["step"], i["root_cause"], i["samples"]) for i in run["incidents"]] == [
        (2, "input_nonfinite", [6])
    ]


def test_heal_is_refused_with_the_reason(results: dict[str, Any]) -> None:
    assert "heal" in results["heal"]["error"] and "TensorFlow" in results["heal"]["error"]


def test_a_bad_step_among_many_unpolled_ones_keeps_its_batch(results: dict[str, Any]) -> None:
    if results["backend"] != "jax":
        pytest.skip("JAX only: PyTorch's guard decides each step on the host")
    out = results["late_nan:skip"]
    run = out["run"]
    assert out["reference_first_bad"] == 937
    assert (run["status"], run["steps"]) == ("completed", 1250)
    (incident,) = run["incidents"]
    assert (incident["step"], incident["root_cause"], incident["samples"]) == (
        937,
        "input_nonfinite",
        [15000 - 937 * 16],
    )
    assert out["weights_finite"]
