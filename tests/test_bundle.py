"""Repro bundles written by real guarded runs, and ``nanguard replay`` reproducing them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from faults import label_out_of_range, nan_input

import nanguard
from nanguard.cli import main
from nanguard.diagnose.bundle import MAX_PER_RUN, load_bundle

SCRIPTS = Path(__file__).parent / "scripts"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def replay(bundle: Path, tmp_path: Path, *extra: str) -> tuple[int, dict]:
    out = tmp_path / "replay.json"
    code = main(["replay", str(bundle), "--json", str(out), *extra])
    return code, json.loads(out.read_text())


def test_sequential_bundle_holds_the_pre_step_weights_and_replays(
    tmp_path: Path, reference, guarded
) -> None:
    ref, _ = reference(nan_input)
    guard, case = guarded(nan_input, bundle_dir=tmp_path / "b", data=nan_input().x)
    incident = guard.report.runs[0].incidents[0]
    assert incident.step == ref.first_bad == 4
    folder = tmp_path / "b" / "step-4"
    assert guard.bundles == {4: folder}
    assert {p.name for p in folder.iterdir()} == {
        "model.keras",
        "batch.npz",
        "history.npz",
        "source.npz",
        "incident.json",
    }
    info = json.loads((folder / "incident.json").read_text())
    assert (info["step"], info["symptom"], info["weights"]) == (4, "nonfinite_loss", "pre-step")
    assert info["incident"]["samples"] == incident.samples == [5]
    assert set(info["versions"]) >= {"nanguard", "keras", "tensorflow"}

    bundle = load_bundle(folder)
    for saved, before in zip(bundle.model.get_weights(), ref.before_bad, strict=True):
        np.testing.assert_array_equal(saved, before)  # exactly the weights the bad step began from
    np.testing.assert_array_equal(bundle.batch.x, case.x[128:160])
    np.testing.assert_array_equal(bundle.batch.y, case.y[128:160])
    assert list(bundle.history["step"]) == [0, 1, 2, 3]
    np.testing.assert_array_equal(bundle.source, case.x)  # the training inputs, small: kept
    assert bundle.model.optimizer.iterations.numpy() == 4  # optimizer state kept

    code, result = replay(folder, tmp_path)
    assert code == 0 and result["reproduced"] and result["diagnosis_matches"]
    assert result["incident"]["root_cause"] == "input_nonfinite"
    assert result["incident"]["samples"] == [5]
    assert result["incident"]["dataset_indices"] == [133]  # from the training inputs kept
    assert result["replay"]["nonfinite_gradients"]


def test_label_out_of_range_replays_as_the_error_it_raises_unguarded(
    tmp_path: Path, guarded
) -> None:
    guard, _ = guarded(label_out_of_range, bundle_dir=tmp_path)
    incident = guard.report.runs[0].incidents[0]
    code, result = replay(tmp_path / f"step-{incident.step}", tmp_path)
    assert code == 0 and result["reproduced"]
    assert "outside the valid range" in result["replay"]["error"]
    assert result["incident"]["root_cause"] == "label_out_of_range" == incident.root_cause
    assert result["incident"]["samples"] == incident.samples


def test_functional_two_inputs_keeps_the_batch_structure(tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(3)
    a = rng.normal(size=(96, 3)).astype("float32")
    b = rng.normal(size=(96, 2)).astype("float32")
    b[50] = 200.0  # exp(200) overflows float32
    y = rng.normal(size=(96, 1)).astype("float32")
    w = rng.uniform(0.5, 1.0, size=96).astype("float32")
    ia, ib = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    grown = keras.layers.Activation("exponential", name="grow")(ib)
    h = keras.layers.Concatenate()([keras.layers.Dense(4)(ia), grown])
    model = keras.Model([ia, ib], keras.layers.Dense(1)(h))
    model.compile("adam", "mse")
    guard = nanguard.Guard(verbose=False, bundle_dir=tmp_path / "b")
    model.fit(
        [a, b], y, sample_weight=w, batch_size=16, shuffle=False, verbose=0, callbacks=[guard]
    )
    incident = guard.report.runs[0].incidents[0]
    assert (incident.step, incident.layer, incident.samples) == (3, "grow", [2])

    bundle = load_bundle(guard.bundles[3])
    assert isinstance(bundle.batch.x, list | tuple) and len(bundle.batch.x) == 2
    np.testing.assert_array_equal(bundle.batch.x[0], a[48:64])
    np.testing.assert_array_equal(bundle.batch.x[1], b[48:64])
    np.testing.assert_array_equal(bundle.batch.sample_weight, w[48:64])

    code, result = replay(guard.bundles[3], tmp_path)
    assert code == 0 and result["reproduced"] and result["diagnosis_matches"]
    assert (result["incident"]["root_cause"], result["incident"]["layer"]) == (
        incident.root_cause,
        "grow",
    )


def test_script_with_custom_layer_and_loss_replays_in_a_fresh_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "r"
    script = SCRIPTS / "custom_layer_nan.py"
    run = subprocess.run(
        [sys.executable, "-m", "nanguard", "run", "--report", str(report), str(script)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    recorded = json.loads((report / "report.json").read_text())["runs"][0]["incidents"][0]
    folder = report / "bundles" / f"step-{recorded['step']}"
    assert f"nanguard replay {folder}" in run.stderr
    info = json.loads((folder / "incident.json").read_text())
    assert info["custom_objects"] == {"LogAbs": "LogAbs", "halved_mse": "halved_mse"}
    source = (folder / "custom_objects.py").read_text()
    assert "class LogAbs(keras.layers.Layer)" in source and "def halved_mse" in source
    assert "SHIFT = 0.0" in source and source.startswith("# Custom objects")

    out = subprocess.run(
        [sys.executable, "-m", "nanguard", "replay", str(folder), "--json", "replay.json"],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=tmp_path,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "nanguard replay: reproduced" in out.stdout
    assert "the diagnosis matches the recorded one" in out.stdout
    result = json.loads((tmp_path / "replay.json").read_text())
    assert result["incident"]["root_cause"] == recorded["root_cause"]
    assert result["incident"]["layer"] == recorded["layer"] == "log_abs"
    assert result["incident"]["samples"] == recorded["samples"] == [40 - 32]

    # Without its custom objects the bundle cannot load; given as a file of one's own, it can.
    mine = tmp_path / "my_objects.py"
    (folder / "custom_objects.py").rename(mine)
    assert main(["replay", str(folder)]) == 2
    assert "missing; pass --custom-objects FILE.py defining LogAbs" in capsys.readouterr().err
    assert main(["replay", str(folder), "--custom-objects", str(mine)]) == 0
    assert "the diagnosis matches the recorded one" in capsys.readouterr().out


def test_mixed_float16_overflow_replays_under_the_runs_policy(tmp_path: Path) -> None:
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(160, 8)).astype("float32")
        x[150] *= 30000.0  # overflows float16 in the second Dense
        model = keras.Sequential(
            [
                keras.Input((8,)),
                keras.layers.Dense(32, activation="relu"),
                keras.layers.Dense(32, kernel_initializer=keras.initializers.Constant(1.0)),
                keras.layers.Dense(1, dtype="float32"),
            ]
        )
        model.compile("adam", "mse")
        guard = nanguard.Guard(verbose=False, bundle_dir=tmp_path / "b")
        model.fit(x, x[:, :1], batch_size=32, shuffle=False, verbose=0, callbacks=[guard])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    incident = guard.report.runs[0].incidents[0]
    assert incident.root_cause == "float16_overflow"
    code, result = replay(guard.bundles[incident.step], tmp_path)
    assert code == 0 and result["diagnosis_matches"], result["differences"]
    assert result["incident"]["layer"] == incident.layer
    assert keras.config.dtype_policy().name == "float32"  # the caller's policy is back


class Holder(keras.Model):
    """A model Keras cannot save: an array passed to ``__init__`` and no ``get_config``."""

    def __init__(self, table: np.ndarray) -> None:
        super().__init__()
        self.table = table
        self.dense = keras.layers.Dense(1)

    def call(self, x):
        return self.dense(x)


def test_unsavable_model_still_gets_batch_and_history_and_a_nan_storm_is_bounded(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(128, 3)).astype("float32")
    x[::16, 0] = np.nan  # one bad record in every batch
    model = Holder(np.ones(3))
    model.compile("sgd", "mse")
    guard = nanguard.Guard("skip", verbose=False, bundle_dir=tmp_path)
    model.fit(x, x[:, 1:2], batch_size=16, shuffle=False, verbose=0, callbacks=[guard])
    assert len(guard.report.runs[0].incidents) == 8
    assert sorted(guard.bundles) == list(range(MAX_PER_RUN))
    assert len(list(tmp_path.iterdir())) == MAX_PER_RUN
    said = [line for line in capfd.readouterr().err.splitlines() if "repro bundle" in line]
    assert len(said) == 1 and "has no model" in said[0]

    folder = tmp_path / "step-0"
    assert {p.name for p in folder.iterdir()} == {"batch.npz", "history.npz", "incident.json"}
    info = json.loads((folder / "incident.json").read_text())
    assert info["model"] is None and "cannot save Holder" in info["model_missing"]
    code, result = replay(folder, tmp_path)
    assert code == 1 and not result["reproduced"]
    assert result["incident"]["root_cause"] == "input_nonfinite"  # from the batch alone
    assert result["incident"]["samples"] == [0]


def test_healthy_run_writes_no_bundle(tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    guard = nanguard.Guard(verbose=False, bundle_dir=tmp_path / "b")
    model.fit(x, x[:, :1], batch_size=16, verbose=0, callbacks=[guard])
    assert not guard.report.runs[0].incidents and not (tmp_path / "b").exists()


def test_unreadable_bundles_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = {}
    cases["missing"] = tmp_path / "nowhere"
    (tmp_path / "garbled").mkdir()
    (tmp_path / "garbled" / "incident.json").write_text("{not json")
    cases["garbled"] = tmp_path / "garbled"
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    incident = {"step": 0, "symptom": "nonfinite_loss"}
    info = {"format": 1, "step": 0, "flags": 1, "incident": incident, "model": "model.keras"}
    (truncated / "incident.json").write_text(json.dumps(info))
    np.savez(truncated / "history.npz", step=np.zeros(0))
    (truncated / "model.keras").write_bytes(b"PK\x03\x04 cut short")
    cases["truncated"] = truncated
    (tmp_path / "incomplete").mkdir()
    (tmp_path / "incomplete" / "incident.json").write_text(json.dumps({**info, "incident": {}}))
    cases["incomplete"] = tmp_path / "incomplete"
    expected = {
        "missing": f"nanguard replay: {cases['missing']}: not a bundle folder",
        "garbled": f"nanguard replay: {cases['garbled'] / 'incident.json'}: unreadable",
        "truncated": f"nanguard replay: {truncated / 'model.keras'}: cannot load the model",
        "incomplete": f"nanguard replay: {cases['incomplete'] / 'incident.json'}: incomplete",
    }
    for name, folder in cases.items():
        assert main(["replay", str(folder)]) == 2, name
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith(expected[name]), err
    assert main(["replay", str(truncated), "--custom-objects", "nope.py"]) == 2
    assert capsys.readouterr().err.strip() == "nanguard replay: nope.py: no such file"
