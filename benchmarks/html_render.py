"""Size and speed of the HTML report of a long run.

Builds the report of a 10,000-step run, either from a synthetic history with many variables
(default: the recorder's own ``series_of`` on numpy rows, as at the end of a real run) or from a
real guarded Keras run (``--real``: a small MLP that meets a NaN record at its last step), then
prints the HTML size, the time to generate it (series + page, median of ``--repeat``) and the
time headless Chromium takes to load it and write a 1200 x 2000 screenshot, next to the same
for a page of one line of text (Chromium's own start-up and font set-up).

    python benchmarks/html_render.py [--steps 10000] [--variables 40] [--real]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from nanguard.contract import Incident, Report, Run, Warning
from nanguard.render.html import render_html
from nanguard.render.series import series_of

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1200,2000",
]


def synthetic(steps: int, n_vars: int) -> tuple[Run, dict[str, np.ndarray], list[str]]:
    """A run whose gradients explode over its last 5 % of steps, with warnings all along."""
    rng = np.random.default_rng(0)
    grads = np.abs(rng.normal(1.0, 0.2, (steps, n_vars))) * np.geomspace(0.01, 10, n_vars)
    tail = max(steps // 20, 1)
    grads[-tail:] *= np.geomspace(1, 1e6, tail)[:, None]
    grads[-1, 0] = np.inf
    loss = (2 * np.exp(-np.arange(steps) / (steps / 3)) + 0.1 * rng.random(steps)).astype("f4")
    loss[-1] = np.nan
    flags = np.zeros(steps, np.int32)
    flags[-1] = 3
    sampled = np.arange(0, steps, 50)
    rows = {
        "step": np.arange(steps),
        "loss": loss,
        "flags": flags,
        "grad_norms": grads,
        "sample_step": sampled,
        "weight_norms": np.ones((len(sampled), n_vars), np.float32),
        "update_ratios": np.abs(rng.normal(1e-3, 2e-4, (len(sampled), n_vars))).astype("f4"),
    }
    names = [f"model/block_{i // 2}/{'kernel' if i % 2 == 0 else 'bias'}" for i in range(n_vars)]
    run = Run(kind="fit", model="model", policy="stop", status="stopped", steps=steps)
    run.incidents.append(
        Incident(
            step=steps - 1,
            epoch=9,
            batch=steps // 10 - 1,
            symptom="nonfinite_gradient",
            root_cause="exploding_gradients",
            confidence=0.9,
            layer="block_0",
            evidence=["the global gradient norm grew 1e6x over the last steps"],
            fixes=["Clip gradients: `keras.optimizers.Adam(clipnorm=1.0)`"],
            action="stopped",
        )
    )
    for step in range(steps - tail, steps, 5):
        run.warnings.append(
            Warning(step, "exploding_gradients", "block_0", "warning", "gradient norm rising")
        )
    return run, rows, names


def real(steps: int) -> Run:
    """A small MLP trained ``steps`` steps under the guard, the last batch holding a NaN."""
    import keras

    import nanguard

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(steps * 8, 8)).astype("float32")
    y = x[:, :1] * 0.5
    x[-1, 0] = np.nan
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(1),
        ]
    )
    model.compile("adam", "mse")
    guard = nanguard.Guard(verbose=False)
    began = time.perf_counter()
    model.fit(x, y, batch_size=8, shuffle=False, verbose=0, callbacks=[guard])
    print(f"real run: {guard.report.runs[0].steps} steps in {time.perf_counter() - began:.1f} s")
    return guard.report.runs[0]


def chromium_seconds(page: Path, folder: Path) -> float:
    chromium = shutil.which("chromium")
    assert chromium, "chromium is not installed"
    profile = folder / f"profile-{page.stem}"
    began = time.perf_counter()
    subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={folder / (page.stem + '.png')}",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        check=True,
        timeout=120,
    )
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--variables", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--real", action="store_true", help="a real guarded Keras run")
    args = parser.parse_args()

    if args.real:
        run = real(args.steps)
        rows = names = None
    else:
        run, rows, names = synthetic(args.steps, args.variables)
    generate = []
    html = ""
    for _ in range(args.repeat):
        began = time.perf_counter()
        if rows is not None:
            run.series = series_of(rows, names)
        html = render_html(Report([run]))
        generate.append(time.perf_counter() - began)
    size = len(html.encode())
    kind = "real" if args.real else f"synthetic, {args.variables} variables"
    print(f"run: {run.steps} steps ({kind}), {len(run.warnings)} warnings")
    print(f"html size: {size / 1e6:.3f} MB ({size} bytes)")
    what = "page" if args.real else "series + page"
    print(
        f"generation ({what}): median {statistics.median(generate) * 1e3:.0f} ms, "
        f"min {min(generate) * 1e3:.0f} ms over {args.repeat}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        report = folder / "report.html"
        report.write_text(html, encoding="utf-8")
        line = folder / "line.html"
        line.write_text("<!doctype html><p style='font:15px system-ui'>one line</p>", "utf-8")
        loads = [(chromium_seconds(line, folder), chromium_seconds(report, folder)) for _ in "123"]
    for blank, page in loads:
        print(
            f"chromium load-to-screenshot: report {page:.2f} s, one-line page {blank:.2f} s, "
            f"difference {page - blank:+.2f} s"
        )


if __name__ == "__main__":
    main()
