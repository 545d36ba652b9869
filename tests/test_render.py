"""Reports people read: HTML escaping and size, ``nanguard report``, TensorBoard event files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import keras
import numpy as np
import pytest

from nanguard.cli import main
from nanguard.contract import Incident, Report, Run, Warning
from nanguard.render.html import FeatureHistogram, histograms_html, page, render_html
from nanguard.render.series import ActivationRange, record_activations, series_of
from nanguard.render.terminal import print_run_summary
from nanguard.runscript import write_outputs

HOSTILE = "<script>alert('x')</script>"


def _rows(steps: int, n_vars: int, seed: int = 0) -> dict[str, np.ndarray]:
    """History rows of a run whose gradients explode at the end (what the recorder keeps)."""
    rng = np.random.default_rng(seed)
    grads = np.abs(rng.normal(1.0, 0.2, (steps, n_vars)))
    grads[-steps // 20 :] *= np.geomspace(1, 1e6, steps // 20)[:, None]
    grads[-1, 0] = np.inf
    loss = (2 * np.exp(-np.arange(steps) / (steps / 3)) + 0.1 * rng.random(steps)).astype("f4")
    loss[-1] = np.nan
    flags = np.zeros(steps, np.int32)
    flags[-1] = 3
    sampled = np.arange(0, steps, 50)
    return {
        "step": np.arange(steps),
        "loss": loss,
        "flags": flags,
        "grad_norms": grads,
        "sample_step": sampled,
        "weight_norms": np.ones((len(sampled), n_vars), np.float32),
        "update_ratios": np.abs(rng.normal(1e-3, 2e-4, (len(sampled), n_vars))).astype("f4"),
    }


def _run(steps: int = 300, n_vars: int = 6, name: str = "mlp", warnings: int = 3) -> Run:
    variables = [f"{name}/dense_{i}/kernel" for i in range(n_vars)]
    run = Run(kind="fit", model=name, policy="stop", status="stopped", steps=steps)
    run.epoch_losses = [1.5, float("nan")]
    run.incidents.append(
        Incident(
            step=steps - 1,
            epoch=1,
            batch=7,
            symptom="nonfinite_gradient",
            root_cause="exploding_gradients",
            confidence=0.9,
            layer=f"{name}/dense_0",
            op="MatMul",
            samples=[3, 4],
            dataset_indices=[1203],
            evidence=[f"the gradient norm of {name}/dense_0 grew 1e6x over 15 steps"],
            fixes=["Clip gradients: `keras.optimizers.Adam(clipnorm=1.0)`"],
            action="stopped",
        )
    )
    for k in range(warnings):
        run.warnings.append(
            Warning(steps - 15 + k % 15, "exploding_gradients", f"{name}/dense_0", "warning", name)
        )
    run.series = series_of(_rows(steps, n_vars), variables)
    record_activations(
        run,
        steps - 1,
        [ActivationRange(f"{name}/dense_{i}", -(10.0**i), 10.0**i, 10.0**i) for i in range(6)]
        + [ActivationRange(f"{name}/out", float("-inf"), float("inf"), float("inf"))],
    )
    return run


def test_every_name_and_message_from_the_model_is_escaped() -> None:
    run = _run(name=HOSTILE)
    run.incidents[0].op = HOSTILE
    run.incidents[0].fixes.append(f"rename `{HOSTILE}`")
    hists = [FeatureHistogram.of(HOSTILE, np.r_[np.arange(100.0), np.nan], note=HOSTILE)]
    section = histograms_html(hists, title=HOSTILE)
    assert section.count("<rect") == 30 and "1 non-finite" in section  # one bar per bin
    html = render_html(Report([run])) + page(HOSTILE, section)

    assert "<script" not in html.lower()
    assert "alert('x')" not in html  # quotes are escaped too, even inside attributes
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    # the page still holds what matters: cause, fix (with code), the plots, the float16 line
    assert (
        "exploding_gradients" in html and "<code>keras.optimizers.Adam(clipnorm=1.0)</code>" in html
    )
    assert html.count("data:image/png;base64,") >= 2  # heat map and its colour key
    assert "float16 max 65504" in html


def test_rich_markup_in_names_stays_text(capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(name="[red]model[/red]", warnings=40)
    print_run_summary(run, file=None)
    err = capsys.readouterr().err
    assert "[red]model[/red]" in err
    lines = [line for line in err.splitlines() if line.startswith("  warning")]
    assert len(lines) == 1 and "40x" in lines[0]  # one line per kind of warning


def test_a_10000_step_run_with_many_variables_stays_under_2_mb() -> None:
    run = _run(steps=10_000, n_vars=120, warnings=2_000)
    for step in range(9_000, 9_999, 10):  # a skip run: a hundred incidents
        run.incidents.append(Incident(step=step, epoch=0, batch=step, symptom="nonfinite_loss"))
    html = render_html(Report([run]))
    size = len(html.encode())
    assert size < 2_000_000, size
    assert run.series is not None and len(run.series["step"]) <= 600
    assert "40 of 120 shown" in html  # the heat map keeps the largest and the non-finite rows
    assert "81 more incidents" in html


def test_contract_json_is_unchanged_by_the_series() -> None:
    run = _run()
    data = Report([run]).to_dict()["runs"][0]
    assert list(data) == [
        "kind",
        "model",
        "policy",
        "status",
        "steps",
        "epoch_losses",
        "incidents",
        "warnings",
    ]
    assert data["epoch_losses"] == [1.5, None]


def test_report_command_rerenders_a_saved_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = Report([_run(name="saved_model"), Run(kind="fit", model="healthy", policy="stop")])
    write_outputs(report, None, str(tmp_path / "out"))
    saved = tmp_path / "out" / "report.json"
    assert json.loads((tmp_path / "out" / "series.json").read_text())["runs"][1] is None

    assert main(["report", str(saved), "--html", str(tmp_path / "again.html")]) == 0
    out = capsys.readouterr().out
    assert "exploding_gradients" in out and "op MatMul" in out and "saved_model" in out
    assert "healthy: 0 steps, no non-finite value" in out
    again = (tmp_path / "again.html").read_text()
    assert "Gradient norms" in again and "Activation ranges at step 299" in again
    assert again == (tmp_path / "out" / "report.html").read_text()  # series.json was used

    (tmp_path / "out" / "series.json").unlink()
    assert main(["report", str(saved), "--html", str(tmp_path / "bare.html")]) == 0
    bare = (tmp_path / "bare.html").read_text()
    assert "exploding_gradients" in bare and "Gradient norms" not in bare


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("{not json", "not valid JSON"),
        ('{"schema": 1, "rows": 3, "findings": []}', "not a nanguard run report"),
        ('{"schema": 1, "runs": [{"kind": "fit"}]}', "runs[0] has no 'model'"),
        (
            '{"schema": 1, "runs": [{"kind": "fit", "model": "m", "policy": "stop", '
            '"incidents": [{"step": 1, "epoch": 0, "batch": 1, "symptom": "bad"}]}]}',
            "runs[0].incidents[0]: unknown symptom 'bad'",
        ),
    ],
)
def test_report_command_rejects_bad_input_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    path = tmp_path / "run.json"
    if content is not None:
        path.write_text(content)
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and str(path) in err


def _events(folder: Path) -> dict[str, list[tuple[int, object]]]:
    """Tag -> [(step, value)] from the event files, read back with TensorFlow's own reader."""
    import tensorflow as tf

    found: dict[str, list[tuple[int, object]]] = {}
    files = sorted(folder.glob("events.out.tfevents.*"))
    assert files
    plugins: dict[str, str] = {}
    for file in files:
        for event in tf.compat.v1.train.summary_iterator(str(file)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name:
                    plugins[value.tag] = value.metadata.plugin_data.plugin_name
                array = tf.make_ndarray(value.tensor)
                found.setdefault(value.tag, []).append(
                    (event.step, array.item() if array.ndim == 0 else array)
                )
    found["__plugins__"] = sorted(plugins.items())  # type: ignore[assignment]
    return found


def test_tensorboard_event_files_of_a_guarded_run(tmp_path: Path) -> None:
    import nanguard

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(640, 5)).astype("float32")
    y = x[:, :1] * 0.5
    x[600, 2] = np.nan  # step 37 with batches of 16, unshuffled
    model = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)]
    )
    model.compile("sgd", "mse")
    guard = nanguard.Guard(verbose=False, sample_every=4, tensorboard_dir=tmp_path / "tb")
    model.fit(x, y, batch_size=16, shuffle=False, verbose=0, callbacks=[guard])

    run = guard.report.runs[0]
    assert run.incidents[0].step == 37
    events = _events(tmp_path / "tb")
    plugins = dict(events.pop("__plugins__"))  # type: ignore[arg-type]
    names = [v.path for v in model.trainable_variables]
    assert plugins["loss"] == "scalars" and plugins[f"grad_norm/{names[0]}"] == "scalars"
    assert plugins["grad_norm_log10"] == plugins["update_ratio_log10"] == "histograms"
    assert plugins["nanguard/incident"] == "text"

    loss = dict(events["loss"])
    assert sorted(loss) == list(range(38))  # every step up to the bad one, each once
    assert np.isfinite([loss[s] for s in range(37)]).all() and np.isnan(loss[37])
    for name in names:
        grads = dict(events[f"grad_norm/{name}"])
        assert np.isfinite(grads[36]) and not np.isfinite(grads[37])
        assert len(events[f"update_ratio/{name}"]) >= 4
    histogram = events["grad_norm_log10"][0][1]
    assert histogram.shape[1] == 3 and histogram[:, 2].sum() == len(names)
    ((step, text),) = events["nanguard/incident"]
    assert step == 37 and b"input_nonfinite" in text and b"Fix first" in text

    # the same run's plot data, kept beside the report for the HTML
    series = run.series
    assert series is not None and series["step"] == list(range(38))
    assert series["bad"][37] == 1 and series["loss_mean"][37] is None
    html = render_html(guard.report)
    assert re.search(r'class="incident"', html) and "input_nonfinite" in html
