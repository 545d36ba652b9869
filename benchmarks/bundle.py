"""What a repro bundle costs: time to write it at the incident, its size, time to replay it.

Trains MLPs of about 10k, 100k and 1M parameters (Adam, batch 64) on synthetic data with one NaN
record, guarded with ``bundle_dir``; times ``write_bundle`` inside the guard's incident handling,
then ``nanguard replay`` on the bundle (load, diagnose, recompute the step), in this process.

    python benchmarks/bundle.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import nanguard
from nanguard.diagnose import bundle as bundle_module
from nanguard.diagnose.reproduce import replay_command

SIZES = {"10k": (64, 128), "100k": (256, 320), "1M": (1024, 768)}


def one_run(inputs: int, hidden: int, folder: Path) -> tuple[int, float, int, float]:
    """(parameters, write seconds, bundle bytes, replay seconds)."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64 * 6, inputs)).astype("float32")
    y = rng.integers(0, 10, size=len(x))
    x[64 * 4 + 7, 3] = np.nan
    model = keras.Sequential(
        [
            keras.Input((inputs,)),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dense(hidden // 3, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    spent: list[float] = []
    original = bundle_module.write_bundle

    def timed(*args, **kwargs):  # instrumentation: the real writer, timed
        began = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - began)

    bundle_module.write_bundle = timed
    try:
        guard = nanguard.Guard(verbose=False, bundle_dir=folder)
        model.fit(x, y, batch_size=64, shuffle=False, verbose=0, callbacks=[guard])
    finally:
        bundle_module.write_bundle = original
    (path,) = guard.bundles.values()
    size = sum(p.stat().st_size for p in path.iterdir())
    began = time.perf_counter()
    code = replay_command(str(path), out=io.StringIO())
    replay_seconds = time.perf_counter() - began
    assert code == 0, "the bundle did not reproduce"
    return model.count_params(), spent[0], size, replay_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{'model':>6} {'params':>9} {'write s':>8} {'size MB':>8} {'replay s':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (inputs, hidden) in SIZES.items():
            rows = [one_run(inputs, hidden, Path(tmp) / f"{name}-{i}") for i in range(args.repeats)]
            params = rows[0][0]
            write = statistics.median(r[1] for r in rows)
            size = statistics.median(r[2] for r in rows) / 1e6
            replay = statistics.median(r[3] for r in rows)
            print(f"{name:>6} {params:>9} {write:>8.3f} {size:>8.2f} {replay:>9.3f}")
    print(f"median of {args.repeats} runs each; replay = load + diagnose + recompute the step")


if __name__ == "__main__":
    main()
