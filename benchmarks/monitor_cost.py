"""Host time the precursor monitors take, as a share of the guarded ``fit`` they watch.

A direct account, steadier than step-time ratios on a shared machine: each model of
``overhead.py`` trains ``--steps`` steps under ``Guard()`` (activation statistics every
``--every`` train-function calls, default 200 as in ``Guard``), and the time spent inside the
monitor's poll (reading the probe's ring, the gradient and learning-rate checks) and inside its
activation samples (one forward pass over the kept batch) is summed and divided by the ``fit``
wall time. Pre-flight runs once at train begin and is timed on its own.

    python benchmarks/monitor_cost.py [--steps 600] [--every 200] [--models mlp,cnn,gru]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
from overhead import MODELS

import nanguard
from nanguard.monitor import watch


class Account:
    """Wall time spent inside a few methods, summed while installed."""

    def __init__(self, targets: dict[str, tuple[Any, str]]) -> None:
        self.seconds = {name: 0.0 for name in targets}
        self.calls = {name: 0 for name in targets}
        self._originals = []
        for name, (owner, attr) in targets.items():
            original = getattr(owner, attr)
            self._originals.append((owner, attr, original))
            setattr(owner, attr, self._timed(name, original))

    def _timed(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - began
                self.calls[name] += 1

        return timed

    def remove(self) -> None:
        for owner, attr, original in self._originals:
            setattr(owner, attr, original)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=600, help="at least (whole epochs)")
    parser.add_argument("--every", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--models", default="mlp,cnn,gru")
    args = parser.parse_args()
    print(f"{args.steps} steps, batch {args.batch}, activation statistics every {args.every} calls")
    print(
        f"{'model':6} {'steps':>6} {'fit s':>7} {'polls':>6} {'poll ms':>8} {'samples':>8} "
        f"{'sample ms':>10} "
        f"{'monitor share':>14} {'pre-flight ms':>14}"
    )
    for name in args.models.split(","):
        keras.utils.set_random_seed(0)
        model, x, y = MODELS[name]()
        epochs = max(1, -(-args.steps * args.batch // len(x)))
        model.fit(x, y, batch_size=args.batch, steps_per_epoch=3, epochs=1, verbose=0)  # trace
        account = Account(
            {
                "poll": (watch.Monitor, "_poll"),
                "sample": (watch.Monitor, "_activations"),
                "preflight": (watch, "begin_run"),
            }
        )
        guard = nanguard.Guard(verbose=False, activation_every=args.every)
        began = time.perf_counter()
        model.fit(x, y, batch_size=args.batch, epochs=epochs, verbose=0, callbacks=[guard])
        wall = time.perf_counter() - began
        account.remove()
        s, c = account.seconds, account.calls
        share = (s["poll"] + s["sample"]) / wall
        print(
            f"{name:6} {guard.report.runs[0].steps:6d} {wall:7.2f} {c['poll']:6d} "
            f"{1e3 * s['poll'] / max(c['poll'], 1):8.2f} "
            f"{c['sample']:8d} {1e3 * s['sample'] / max(c['sample'], 1):10.1f} {share:13.1%} "
            f"{1e3 * s['preflight']:14.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
