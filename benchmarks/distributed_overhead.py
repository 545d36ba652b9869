"""What the guard costs per training step under ``tf.distribute.MirroredStrategy`` on two logical
CPUs (two replicas, so every guarded step adds the all-reduce of its verdicts), against plain
Keras ``fit`` measured in the same run.

Plain ``fit`` and ``nanguard.Guard()`` (and, with ``--configs``, ``guard-monitors``: the guard
without pre-flight and monitors, i.e. its in-graph cost and polling) each get their own copy of
the model (same seed, the models of ``overhead.py``), built in the strategy's scope and traced
once. Then, round after round, each trains ``--steps`` steps, in an order that rotates each
round; a configuration's time in a round is its median step time. Printed per model: each
configuration's best round against plain ``fit``'s best (guarded / plain), and the median over
rounds of the round's ratio with its interquartile range.

    python benchmarks/distributed_overhead.py [--rounds 15] [--steps 40] [--batch 64]
        [--models mlp,cnn,gru] [--configs plain,guard,guard-monitors]
"""

from __future__ import annotations

import argparse
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf

# Two logical CPUs, set before anything starts the runtime (overhead.py imports Keras).
_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
from overhead import MODELS, Config, Models, _fit  # noqa: E402

from nanguard.contract import package_version  # noqa: E402


def prepare(
    strategy: tf.distribute.Strategy, name: str, configs: list[Config], batch: int
) -> Models:
    """A fresh copy of the model per configuration, built in the strategy's scope and traced."""
    models = {}
    for config in configs:
        keras.utils.set_random_seed(0)
        with strategy.scope():
            models[config.name] = MODELS[name]()
        _fit(*models[config.name], config, 3, batch)
    return models


def rounds(
    configs: list[Config], models: Models, count: int, steps: int, batch: int
) -> dict[str, list[float]]:
    """Per configuration, its median step time in each round; the order rotates."""
    times: dict[str, list[float]] = {c.name: [] for c in configs}
    for r in range(count):
        for config in configs[r % len(configs) :] + configs[: r % len(configs)]:
            step_times = _fit(*models[config.name], config, steps, batch)
            times[config.name].append(statistics.median(step_times))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=64, help="global batch (both replicas)")
    parser.add_argument("--models", default="mlp,cnn,gru")
    parser.add_argument(
        "--configs",
        default="plain,guard",
        help="plain first; guard-monitors: the guard without pre-flight and monitors",
    )
    args = parser.parse_args()
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, nanguard {package_version()}")
    print(
        f"MirroredStrategy, {strategy.num_replicas_in_sync} replicas on logical CPUs; "
        f"{args.rounds} rounds x {args.steps} steps, global batch {args.batch}; "
        "a round's time is its median step time\n"
    )
    print(
        f"{'model':6}{'config':>16}{'best ms':>10}{'plain best ms':>15}{'best/best':>11}"
        f"{'median ratio [IQR] over rounds':>34}"
    )
    for name in args.models.split(","):
        configs = [Config(c) for c in args.configs.split(",")]
        models = prepare(strategy, name, configs, args.batch)
        times = rounds(configs, models, args.rounds, args.steps, args.batch)
        plain = min(times["plain"])
        for config in configs[1:]:
            best = min(times[config.name])
            ratios = [t / p for t, p in zip(times[config.name], times["plain"], strict=True)]
            q1, q2, q3 = statistics.quantiles(ratios, n=4)
            print(
                f"{name:6}{config.name:>16}{best * 1e3:10.2f}{plain * 1e3:15.2f}"
                f"{best / plain:10.3f}x{f'{q2:.3f}x [{q1:.3f}-{q3:.3f}]':>34}",
                flush=True,
            )


if __name__ == "__main__":
    main()
