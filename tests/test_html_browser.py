"""The HTML report of a real guarded run, opened in headless Chromium.

Chromium logs every console message (errors, uncaught exceptions, and the violations of the
page's Content Security Policy, which forbids any fetch or script) to stderr; the test wants
none, and a screenshot whose plot colours are really on screen.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import keras
import numpy as np
import pytest

CHROMIUM = shutil.which("chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--hide-scrollbars",
    "--window-size=1200,2200",
]


def _guarded_html(folder: Path) -> Path:
    """A small MLP that meets a NaN record at step 93 of its first epoch, guarded."""
    import nanguard

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1600, 6)).astype("float32")
    y = (x[:, :2].sum(axis=1, keepdims=True) * 0.5).astype("float32")
    x[1500, 3] = np.nan
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(16, activation="relu", name="hidden"),
            keras.layers.Dense(1, name="out"),
        ],
        name="tiny_mlp",
    )
    model.compile("adam", "mse")
    guard = nanguard.Guard(verbose=False, sample_every=5, data=x)
    model.fit(x, y, batch_size=16, shuffle=False, verbose=0, callbacks=[guard])
    incident = guard.report.runs[0].incidents[0]
    assert incident.step == 93 and incident.dataset_indices == [1500]
    return guard.report.save_html(folder / "report.html")


def _share(image: np.ndarray, colour: tuple[int, int, int], tolerance: int = 40) -> int:
    """Pixels within ``tolerance`` (per channel) of ``colour``."""
    return int((np.abs(image - np.array(colour)).max(axis=2) <= tolerance).sum())


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian package chromium)")
def test_report_of_a_guarded_run_renders_in_chromium(tmp_path: Path) -> None:
    from PIL import Image

    from nanguard.render.charts import viridis

    page = _guarded_html(tmp_path)
    shot = tmp_path / "report.png"
    done = subprocess.run(
        [
            str(CHROMIUM),
            *FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    log = done.stderr
    console = [line for line in log.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], "\n".join(console)
    assert shot.is_file(), log[-2000:]

    image = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert image.shape[:2] == (2200, 1200)
    # the incident card's red border and the fix box's green, at the top of the page
    top = image[:700]
    assert _share(top, (220, 38, 38), 10) > 1500
    assert _share(top, (236, 253, 245), 4) > 20_000
    plots = image[700:]
    assert _share(plots, (37, 99, 235), 30) > 300  # the loss curve
    assert _share(plots, (124, 58, 237), 12) > 300  # the global gradient norm
    heat = sum(_share(plots, tuple(c), 3) for c in viridis(np.linspace(0, 1, 48)).round())
    assert heat > 30_000  # the heat map: 740 x 112 pixels of the viridis ramp
    assert _share(plots, (220, 38, 38), 10) > 200  # incident markers and non-finite cells
    ratios = image[1400:]  # below the heat map: one line per variable, in the palette
    assert _share(ratios, (22, 163, 74), 30) > 200 and _share(ratios, (147, 51, 234), 12) > 200
