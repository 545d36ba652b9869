"""The guard on real Keras `fit` runs: every fault caught at its exact step, weights intact."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from conftest import fit_guarded, fit_reference
from faults import DATA_CAUSES, FAULTS, HEALTHY, nan_input

import nanguard
from nanguard.contract import ROOT_CAUSES


def _all_finite(weights: list[np.ndarray]) -> bool:
    return all(np.isfinite(w).all() for w in weights)


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_fault_caught_at_its_step_with_pre_step_weights(name: str) -> None:
    ref, _ = fit_reference(FAULTS[name])
    assert ref.first_bad is not None, f"{name} must go NaN (or raise) without nanguard"

    guard, case = fit_guarded(FAULTS[name])
    run = guard.report.runs[0]
    assert run.status == "stopped"
    first = run.incidents[0]
    assert first.step == ref.first_bad
    assert first.action == "stopped"
    assert first.root_cause in ROOT_CAUSES
    weights = case.model.get_weights()
    assert _all_finite(weights)
    for got, expected in zip(weights, ref.before_bad, strict=True):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("name", sorted(DATA_CAUSES))
def test_data_faults_name_cause_and_samples(name: str) -> None:
    guard, _ = fit_guarded(FAULTS[name])
    incident = guard.report.runs[0].incidents[0]
    cause, samples = DATA_CAUSES[name]
    assert incident.root_cause == cause
    assert incident.samples == samples
    assert incident.evidence and incident.fixes


@pytest.mark.parametrize(
    ("name", "policy"), [*((name, "stop") for name in sorted(HEALTHY)), ("healthy_cnn", "heal")]
)
def test_healthy_run_is_untouched(name: str, policy: str) -> None:
    """Bit for bit, also under heal: its learning-rate factor (1), clip norm (inf) and batch
    filter (no rule on) change nothing, and its snapshots only read."""
    keras.utils.set_random_seed(0)
    plain = HEALTHY[name]()
    plain.model.fit(plain.x, plain.y, verbose=0, **plain.fit)

    guard, guarded = fit_guarded(HEALTHY[name], policy=policy)
    run = guard.report.runs[0]
    assert run.incidents == []
    assert run.status == "completed"
    assert len(run.epoch_losses) == plain.fit["epochs"]
    for got, expected in zip(guarded.model.get_weights(), plain.model.get_weights(), strict=True):
        np.testing.assert_array_equal(got, expected)


def test_skip_policy_skips_the_bad_batch_and_finishes() -> None:
    guard, case = fit_guarded(nan_input, policy="skip")
    run = guard.report.runs[0]
    assert run.status == "completed"
    assert run.steps == 10  # 320 samples / 32, every step attempted
    assert [i.step for i in run.incidents] == [4]
    assert run.incidents[0].action == "skipped"
    assert _all_finite(case.model.get_weights())
    assert np.isfinite(run.epoch_losses[-1])  # Keras' own is NaN: the skipped batch is in it


def test_skip_policy_stops_a_nan_storm_within_its_bound() -> None:
    def storm():  # every batch has a NaN
        case = nan_input()
        case.x[::16, 0] = np.nan
        return case

    guard, case = fit_guarded(storm, policy="skip", max_consecutive=3)
    run = guard.report.runs[0]
    assert run.status == "stopped"
    assert run.steps == 4  # three skipped in a row are allowed, the fourth stops
    assert [i.action for i in run.incidents] == ["skipped"] * 3 + ["stopped"]
    assert _all_finite(case.model.get_weights())


@pytest.mark.parametrize("mode", [{"jit_compile": True}, {"steps_per_execution": 4}])
def test_exact_under_xla_and_steps_per_execution(mode: dict) -> None:
    def build():
        case = nan_input()
        case.model.compile(case.model.optimizer, "mse", **mode)
        return case

    ref, _ = fit_reference(nan_input)
    guard, case = fit_guarded(build)
    incident = guard.report.runs[0].incidents[0]
    assert incident.step == ref.first_bad == 4
    assert incident.root_cause == "input_nonfinite" and incident.samples == [5]
    for got, expected in zip(case.model.get_weights(), ref.before_bad, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert case.model.jit_compile == mode.get("jit_compile", case.model.jit_compile)
    assert "train_step" not in case.model.__dict__


def test_report_json_follows_the_contract(tmp_path) -> None:
    guard, _ = fit_guarded(nan_input)
    data = json.loads(guard.report.to_json())
    assert data["schema"] == 1 and isinstance(data["nanguard"], str)
    run = data["runs"][0]
    assert list(run) == [
        "kind",
        "model",
        "policy",
        "status",
        "steps",
        "epoch_losses",
        "incidents",
        "warnings",
    ]
    incident = run["incidents"][0]
    assert list(incident) == [
        "step",
        "epoch",
        "batch",
        "symptom",
        "root_cause",
        "confidence",
        "alternatives",
        "layer",
        "op",
        "samples",
        "dataset_indices",
        "features",
        "evidence",
        "fixes",
        "action",
        "diagnosis_seconds",
    ]
    assert (incident["epoch"], incident["batch"]) == (0, 4)
    assert incident["features"] == [2]
    html = guard.report.save_html(tmp_path / "r.html").read_text()
    assert "input_nonfinite" in html


def test_guard_reused_across_fits_and_models_are_restored() -> None:
    keras.utils.set_random_seed(0)
    case = nan_input()
    guard = nanguard.Guard(verbose=False)
    clean_x, clean_y = case.x[:128], case.y[:128]
    case.model.fit(clean_x, clean_y, epochs=1, batch_size=32, verbose=0, callbacks=[guard])
    case.model.fit(
        case.x, case.y, epochs=1, batch_size=32, verbose=0, shuffle=False, callbacks=[guard]
    )
    assert [r.status for r in guard.report.runs] == ["completed", "stopped"]
    assert guard.report.runs[1].incidents[0].step == 4
    before = case.model.get_weights()
    case.model.fit(clean_x, clean_y, epochs=1, batch_size=32, verbose=0, callbacks=[guard])
    assert guard.report.runs[2].status == "completed"  # a stop does not carry over
    assert not np.array_equal(before[0], case.model.get_weights()[0])
    case.model.evaluate(clean_x, clean_y, verbose=0, callbacks=[guard])
    case.model.fit(clean_x, clean_y, epochs=1, verbose=0)  # unguarded again, still trains
    assert "train_step" not in case.model.__dict__
    assert "apply" not in case.model.optimizer.__dict__


def test_crash_inside_a_step_is_reported_and_propagates() -> None:
    class Boom(keras.layers.Layer):
        def call(self, x):
            import tensorflow as tf

            tf.debugging.assert_less(tf.reduce_max(x), 3.0, message="value too large")
            return x

    keras.utils.set_random_seed(0)
    x = np.zeros((64, 2), "float32")
    x[40] = 5.0
    model = keras.Sequential([keras.Input((2,)), Boom(), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    guard = nanguard.Guard(verbose=False)
    with pytest.raises(Exception, match="value too large"):
        model.fit(x, np.zeros((64, 1)), batch_size=16, shuffle=False, verbose=0, callbacks=[guard])
    run = guard.report.runs[0]
    assert run.status == "crashed"
    incident = run.incidents[0]
    assert (incident.step, incident.symptom) == (2, "error")
    assert "value too large" in " ".join(incident.evidence)
    assert "train_step" not in model.__dict__


def test_an_unknown_policy_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="policy"):
        nanguard.Guard(policy="ignore")


def test_history_keeps_every_step_and_sampled_weights() -> None:
    guard, case = fit_guarded(HEALTHY["healthy_classifier"], sample_every=3)
    rows = guard.history.rows
    run = guard.report.runs[0]
    assert list(rows["step"]) == list(range(run.steps))
    assert np.isfinite(rows["loss"]).all() and (rows["flags"] == 0).all()
    assert rows["grad_norms"].shape == (run.steps, len(case.model.trainable_variables))
    assert (rows["grad_norms"] > 0).all()
    assert len(rows["sample_step"]) >= run.steps // 4
    assert (rows["weight_norms"] > 0).all()
    assert ((rows["update_ratios"] > 0) & (rows["update_ratios"] < 1)).all()


def test_a_probe_that_cannot_be_built_leaves_training_alone(monkeypatch, capsys) -> None:
    from nanguard.probe.apply import StepProbe

    def broken(self, grads, tvars):
        raise RuntimeError("unsupported optimizer")

    monkeypatch.setattr(StepProbe, "_guarded", broken)
    keras.utils.set_random_seed(0)
    plain = HEALTHY["healthy_noisy_regression"]()
    plain.model.fit(plain.x, plain.y, verbose=0, **plain.fit)
    _, guarded = fit_guarded(HEALTHY["healthy_noisy_regression"])
    assert "cannot guard SGD" in capsys.readouterr().err
    for got, expected in zip(guarded.model.get_weights(), plain.model.get_weights(), strict=True):
        np.testing.assert_array_equal(got, expected)


def test_an_update_that_overflows_the_weights_is_named_at_its_step() -> None:
    """Finite gradients, an absurd learning rate: the weights overflow in the update itself."""

    def absurd():
        case = nan_input()
        case.x[133, 2] = 0.0
        case.y *= 10.0  # gradients above 1, so learning rate x gradient passes float32's max
        case.model.compile(keras.optimizers.SGD(3e38), "mse")
        return case

    ref, _ = fit_reference(absurd)
    guard, _ = fit_guarded(absurd)
    first = guard.report.runs[0].incidents[0]
    assert ref.first_bad == 0  # without nanguard the weights are non-finite after step 0
    assert (first.step, first.symptom) == (0, "nonfinite_weights")
    assert first.root_cause == "learning_rate_too_high"
    from nanguard.render.words import action_text

    # Its update went through (the only kind the guard cannot block); the next step stopped.
    assert (first.action, action_text(first)) == (
        "none",
        "the update that made the weights non-finite was already applied",
    )
    second = guard.report.runs[0].incidents[1]
    assert (second.step, second.action, second.root_cause) == (
        1,
        "stopped",
        "learning_rate_too_high",
    )


class CustomStep(keras.Model):
    """A subclassed model with its own train_step, as the Keras guide writes it."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = keras.layers.Dense(8, activation="tanh")
        self.out = keras.layers.Dense(1)

    def call(self, x):
        return self.out(self.hidden(x))

    def train_step(self, data):
        import tensorflow as tf

        x, y = data
        with tf.GradientTape() as tape:
            loss = keras.ops.mean(keras.ops.square(self(x, training=True) - y))
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        return {"loss": loss}


def test_custom_train_step_and_tf_data_are_guarded() -> None:
    import tensorflow as tf

    def build():
        case = nan_input()
        model = CustomStep()
        model.compile(keras.optimizers.Adam(0.01))
        data = tf.data.Dataset.from_tensor_slices((case.x, case.y)).batch(32)
        return type(case)(model, data, None, {})

    ref, _ = fit_reference(build)
    assert ref.first_bad == 4
    guard, case = fit_guarded(build)
    incident = guard.report.runs[0].incidents[0]
    assert (incident.step, incident.root_cause, incident.samples) == (4, "input_nonfinite", [5])
    for got, expected in zip(case.model.get_weights(), ref.before_bad, strict=True):
        np.testing.assert_array_equal(got, expected)


def test_dataset_rows_are_named_even_when_fit_shuffles() -> None:
    keras.utils.set_random_seed(0)
    case = nan_input()  # the NaN is in row 133
    guard = nanguard.Guard(verbose=False, data=case.x)
    case.model.fit(case.x, case.y, batch_size=32, shuffle=True, verbose=0, callbacks=[guard])
    incident = guard.report.runs[0].incidents[0]
    assert incident.root_cause == "input_nonfinite"
    assert incident.dataset_indices == [133]


def test_dataset_rows_of_dict_inputs_follow_keras_key_order() -> None:
    keras.utils.set_random_seed(0)
    case = FAULTS["dict_inputs_nan"]()  # the NaN is in input "b", row 123
    data = {"b": case.x["b"], "a": case.x["a"]}  # insertion order differs from Keras' sorted one
    guard = nanguard.Guard(verbose=False, data=data)
    case.model.fit(data, case.y, verbose=0, callbacks=[guard], **case.fit)
    assert guard.report.runs[0].incidents[0].dataset_indices == [123]
