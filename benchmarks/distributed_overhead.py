"""What the guard costs per training step under ``tf.distribute.MirroredStrategy`` on two logical
CPUs (two replicas, so every guarded step adds the all-reduce of its verdicts), against plain
Keras ``fit`` measured in the same run.

One model per benchmark model (the models of ``overhead.py``), built in the strategy's scope, and
one ``nanguard.Guard`` kept for the whole run, as a user keeps it. Round after round the same
model trains ``--steps`` steps with the guard and ``--steps`` steps without it, the order
alternating: the guard keeps both traced train functions, so switching retraces nothing, and the
two measurements share the model's memory and placement (separate copies of one model differ by
up to ~15% in step time on a 2-core machine, more than the guard costs). A step's time is the wall
time between consecutive batch ends, the first ``--skip`` steps of a fit left out. Printed per
model: plain ``fit``'s median step time, and for each guard configuration the median over rounds
of its ratio to plain ``fit`` in the same round, with the interquartile range, for the mean step
time (what a run takes, the host's periodic weight and activation samples included) and for the
median step time (the steady step).

For reference, the same model then trains with Keras' own ``LossScaleOptimizer`` against plain
Adam, alternating the same way (the two compiled train functions kept and swapped): it skips
non-finite steps through the same cross-replica ``tf.cond`` the guard uses under a strategy that
merges replicas, so its ratio shows what any skip costs there (row ``keras-skip``).

    python benchmarks/distributed_overhead.py [--rounds 15] [--steps 120] [--batch 64]
        [--models mlp,cnn,gru|resnet] [--configs guard,guard-monitors] [--no-keras-skip]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf

# Two logical CPUs, set before anything starts the runtime (overhead.py imports Keras).
_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from overhead import GUARDS, MODELS  # noqa: E402

from nanguard.contract import package_version  # noqa: E402


class BatchEnds(keras.callbacks.Callback):
    """Wall time between consecutive batch ends."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []
        self._last: float | None = None

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.times.append(now - self._last)
        self._last = now


def step_times(
    model: keras.Model, data: tf.data.Dataset, guard: Any, steps: int, skip: int
) -> list[float]:
    timer = BatchEnds()
    callbacks = [timer] if guard is None else [guard, timer]
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False, callbacks=callbacks)
    return timer.times[skip:]


def measure(
    strategy: tf.distribute.Strategy,
    name: str,
    configs: list[str],
    rounds: int,
    steps: int,
    batch: int,
    skip: int,
) -> dict[str, dict[str, list[float]]]:
    """Per configuration ("plain" too), per statistic, one value per round."""
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model, x, y = MODELS[name]()
    data = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(batch).prefetch(2)
    guards: dict[str, Any] = {"plain": None} | {c: GUARDS[c]() for c in configs}
    return alternate(
        lambda config, n, first: step_times(model, data, guards[config], n, first),
        list(guards),
        rounds,
        steps,
        skip,
    )


def alternate(
    run: Callable[[str, int, int], list[float]],
    order: list[str],
    rounds: int,
    steps: int,
    skip: int,
) -> dict[str, dict[str, list[float]]]:
    """``run(config, steps, first steps left out)`` for each configuration once to trace it,
    then round after round in an order that rotates: per configuration, per statistic, one value
    per round."""
    for config in order:
        run(config, skip + 5, 0)
    out: dict[str, dict[str, list[float]]] = {c: {"mean": [], "median": []} for c in order}
    for r in range(rounds):
        for config in order[r % len(order) :] + order[: r % len(order)]:
            times = run(config, steps, skip)
            out[config]["mean"].append(statistics.fmean(times))
            out[config]["median"].append(statistics.median(times))
    return out


def keras_skip(
    strategy: tf.distribute.Strategy, name: str, rounds: int, steps: int, batch: int, skip: int
) -> dict[str, dict[str, list[float]]]:
    """Plain Adam and Adam in a ``LossScaleOptimizer``, one model, in alternation (as
    :func:`measure`; the optimizer and its train function swapped between fits)."""
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model, x, y = MODELS[name]()
        compiled: dict[str, tuple[Any, Any]] = {}
        for config, optimizer in (
            ("plain", keras.optimizers.Adam()),
            ("keras-skip", keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam())),
        ):
            model.compile(optimizer, model.loss)
            compiled[config] = (model.optimizer, model.make_train_function())
    data = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(batch).prefetch(2)

    def run(config: str, n: int, first: int) -> list[float]:
        model.optimizer, model.train_function = compiled[config]
        return step_times(model, data, None, n, first)

    return alternate(run, list(compiled), rounds, steps, skip)  # each traced with its optimizer


def print_rows(name: str, out: dict[str, dict[str, list[float]]], configs: list[str]) -> None:
    plain = out["plain"]
    for config in configs:
        cells = []
        for stat in ("mean", "median"):
            ratios = np.divide(out[config][stat], plain[stat])
            q1, q2, q3 = statistics.quantiles(ratios, n=4)
            cells.append(f"{q2:.3f}x [{q1:.3f}-{q3:.3f}]".rjust(26))
        print(
            f"{name:6}{config:>16}{statistics.median(plain['median']) * 1e3:10.2f}"
            + "".join(cells),
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--skip", type=int, default=3, help="first steps of each fit left out")
    parser.add_argument("--batch", type=int, default=64, help="global batch (both replicas)")
    parser.add_argument("--models", default="mlp,cnn,gru")
    parser.add_argument(
        "--configs",
        default="guard",
        help="guard-monitors: the guard without pre-flight and monitors",
    )
    parser.add_argument(
        "--no-keras-skip",
        dest="keras_skip",
        action="store_false",
        help="leave out the LossScaleOptimizer reference",
    )
    args = parser.parse_args()
    configs = args.configs.split(",")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, nanguard {package_version()}")
    print(
        f"MirroredStrategy, 2 replicas on logical CPUs; {args.rounds} rounds x {args.steps} "
        f"steps per configuration, global batch {args.batch}; ratio to plain fit in the same "
        "round: median [IQR] over rounds\n"
    )
    print(f"{'model':6}{'config':>16}{'plain ms':>10}{'mean step':>26}{'median step':>26}")
    for name in args.models.split(","):
        out = measure(strategy, name, configs, args.rounds, args.steps, args.batch, args.skip)
        print_rows(name, out, configs)
        if args.keras_skip:
            reference = keras_skip(strategy, name, args.rounds, args.steps, args.batch, args.skip)
            print_rows(name, reference, ["keras-skip"])


if __name__ == "__main__":
    main()
