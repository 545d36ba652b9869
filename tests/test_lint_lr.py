"""`nanguard.lint`, `nanguard.find_lr` and their commands, on real models and real scripts."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import keras
import numpy as np
from precursors import learning_rate_far_too_high

import nanguard

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def nanguard_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nanguard", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )


def _classifier(output_activation: str, units: int = 3) -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(units, activation=output_activation),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def test_lint_names_the_setup_faults_and_passes_a_sound_setup() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    labels = rng.integers(0, 3, 64)
    keras.utils.set_random_seed(0)
    assert nanguard.lint(_classifier("softmax"), x, labels) == []

    bad_x, bad_labels = x.copy(), labels.copy()
    bad_x[5, 1] = np.nan
    bad_labels[9] = 3
    found = {w.code: w for w in nanguard.lint(_classifier("relu"), bad_x, bad_labels)}
    assert set(found) == {"output_loss_mismatch", "input_nonfinite", "label_out_of_range"}
    assert all(w.severity == "critical" and w.step == 0 for w in found.values())
    assert "samples 5" in found["input_nonfinite"].message
    assert "[3]" in found["label_out_of_range"].message


def test_lint_reads_a_dataset_and_flags_unscaled_inputs_and_a_brisk_adam() -> None:
    import tensorflow as tf

    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, size=(64, 4)).astype("float32")
    y = rng.normal(size=(64, 1)).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(0.3), "mse")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    codes = {w.code for w in nanguard.lint(model, data)}
    assert codes == {"unscaled_input", "learning_rate_too_high"}


SCRIPT = """
import sys
import keras, numpy as np
keras.utils.set_random_seed(0)
x = np.random.default_rng(0).normal(size=(128, 4)).astype("float32")
y = np.argmax(x[:, :3], axis=1)  # learnable, so the range test sees the loss fall
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation=sys.argv[1])])
model.compile("adam", "sparse_categorical_crossentropy")
{train}
print("TRAINED")
"""
FIT = "model.fit(x, y, epochs=1, verbose=0)"
LOOP = """
import tensorflow as tf
opt = keras.optimizers.Adam()
loss_fn = keras.losses.SparseCategoricalCrossentropy()
for i in range(3):
    with tf.GradientTape() as tape:
        loss = loss_fn(y[:32], model(x[:32]))
    opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                            model.trainable_variables))
"""


def _script(tmp_path: Path, train: str) -> Path:
    path = tmp_path / "train.py"
    path.write_text(textwrap.dedent(SCRIPT.format(train=train)))
    return path


def test_lint_command_stops_the_script_at_fit_and_sets_the_exit_code(tmp_path: Path) -> None:
    script = _script(tmp_path, FIT)
    bad = nanguard_cli("lint", str(script), "relu")
    assert bad.returncode == 1, bad.stderr
    assert "critical output_loss_mismatch" in bad.stdout
    assert "TRAINED" not in bad.stdout  # stopped before training
    good = nanguard_cli("lint", str(script), "softmax")
    assert good.returncode == 0, good.stderr
    assert "no problems found" in good.stderr and "TRAINED" not in good.stdout
    missing = nanguard_cli("lint", str(tmp_path / "nope.py"))
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"nanguard lint: {tmp_path / 'nope.py'}: no such file"


def test_lint_command_stops_a_hand_written_loop_at_its_first_step(tmp_path: Path) -> None:
    out = nanguard_cli("lint", str(_script(tmp_path, LOOP)), "relu")
    assert out.returncode == 1, out.stderr
    assert "output_loss_mismatch" in out.stdout and "TRAINED" not in out.stdout
    assert "at the first optimizer step" in out.stderr


def test_find_lr_suggests_a_rate_below_the_one_that_diverges(tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    case = learning_rate_far_too_high()  # SGD at 1.2 goes non-finite within ~110 steps
    before = [w.copy() for w in case.model.get_weights()]
    found = nanguard.find_lr(case.model, case.x, case.y, batch_size=128, plot=tmp_path / "lr.svg")
    for got, expected in zip(case.model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(got, expected)  # the test left the weights as they were
    assert found.suggestion is not None and found.largest_stable is not None
    assert found.suggestion < found.largest_stable < 1.2 < found.diverged_at
    assert ET.parse(found.plot).getroot().tag.endswith("svg")

    case.model.compile(keras.optimizers.SGD(found.suggestion), "mse")
    history = case.model.fit(case.x, case.y, batch_size=128, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_lr_find_command_prints_the_rates_and_writes_the_plot(tmp_path: Path) -> None:
    plot = tmp_path / "plot.svg"
    out = nanguard_cli("lr-find", "--plot", str(plot), str(_script(tmp_path, FIT)), "softmax")
    assert out.returncode == 0, out.stderr
    assert "suggested learning rate" in out.stdout and "TRAINED" not in out.stdout
    assert ET.parse(plot).getroot().tag.endswith("svg")
    bad = nanguard_cli("lr-find", "--steps", "3", str(_script(tmp_path, FIT)))
    assert bad.returncode == 2
    assert bad.stderr.strip() == "nanguard lr-find: steps must be at least 10; got 3"
