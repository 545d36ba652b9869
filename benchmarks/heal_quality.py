"""Is a healed model any good? Heal against the same model trained without the fault.

For each scenario the same model (same seed) is trained twice, on data from one generator:
once on the faulty setup with ``Guard(policy="heal")``, once on the setup without the fault (the
bad records removed, or the learning rate / initializer that does not diverge). Both are
scored on 2000 fresh samples from the generator (held out: never trained on). Printed per
scenario: the heal run's status and actions, the held-out score of both (MSE, lower is better;
accuracy for classification), and their gap; and the wall time of the heal run over the clean
run's.

    python benchmarks/heal_quality.py [--epochs 6] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import nanguard

N, D, HELD_OUT = 2048, 8, 2000


def regression(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D)).astype("float32")
    y = np.tanh(x[:, :3]).sum(axis=1, keepdims=True) + 0.5 * x[:, 3:4] * x[:, 4:5]
    return x, (y + rng.normal(0, 0.1, (n, 1))).astype("float32")


def classification(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D)).astype("float32")
    teacher = np.random.default_rng(99).normal(size=(D, 4))
    return x, np.argmax(x @ teacher + rng.gumbel(size=(n, 4)) * 0.3, axis=1).astype("int32")


def sequences(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 40, 3)).astype("float32")
    return x, (x[:, -5:, 0].mean(axis=1, keepdims=True) * 2).astype("float32")


def mlp(
    outputs: int = 1, activation: str | None = None, init: Any = "glorot_uniform", depth: int = 2
) -> keras.Model:
    hidden = [
        keras.layers.Dense(64, activation="relu", kernel_initializer=init) for _ in range(depth)
    ]
    return keras.Sequential([keras.Input((D,)), *hidden, keras.layers.Dense(outputs, activation)])


def rnn(gain: float) -> keras.Model:
    recurrent = keras.initializers.Orthogonal(gain=gain)
    return keras.Sequential(
        [
            keras.Input((40, 3)),
            keras.layers.SimpleRNN(32, activation="relu", recurrent_initializer=recurrent),
            keras.layers.Dense(1),
        ]
    )


@dataclass
class Setup:
    model: keras.Model
    x: np.ndarray
    y: np.ndarray


@dataclass
class Scenario:
    name: str
    make: Callable[[int, int], tuple[np.ndarray, np.ndarray]]
    faulty: Callable[[np.ndarray, np.ndarray], Setup]
    clean: Callable[[np.ndarray, np.ndarray], Setup]
    classes: bool = False


def _compiled(model: keras.Model, optimizer: Any, loss: str) -> keras.Model:
    model.compile(optimizer, loss)
    return model


def _without(x: np.ndarray, y: np.ndarray, rows: list[int]) -> tuple[np.ndarray, np.ndarray]:
    keep = np.setdiff1d(np.arange(len(x)), rows)
    return x[keep], y[keep]


def _records(
    name: str,
    spoil: Callable[[np.ndarray, np.ndarray], list[int]],
    classes: bool = False,
    optimizer: Callable[[], Any] = lambda: "adam",
) -> Scenario:
    """A scenario whose fault is a few bad records; the clean twin drops them."""

    def build() -> keras.Model:
        if classes:
            return _compiled(mlp(4, "softmax"), optimizer(), "sparse_categorical_crossentropy")
        return _compiled(mlp(), optimizer(), "mse")

    def faulty(x: np.ndarray, y: np.ndarray) -> Setup:
        x, y = x.copy(), y.copy()
        spoil(x, y)
        return Setup(build(), x, y)

    def clean(x: np.ndarray, y: np.ndarray) -> Setup:
        rows = spoil(x.copy(), y.copy())
        return Setup(build(), *_without(x, y, rows))

    return Scenario(name, classification if classes else regression, faulty, clean, classes)


def _nan_inputs(x: np.ndarray, y: np.ndarray) -> list[int]:
    x[[100, 1500], 2] = np.nan
    return [100, 1500]


def _nan_targets(x: np.ndarray, y: np.ndarray) -> list[int]:
    y[[40, 900, 1800]] = np.nan
    return [40, 900, 1800]


def _new_class(x: np.ndarray, y: np.ndarray) -> list[int]:
    y[[300, 301, 1200]] = 4  # a fifth class the 4-unit output does not have
    return [300, 301, 1200]


def _wrong_unit(x: np.ndarray, y: np.ndarray) -> list[int]:
    x[[700, 1300]] *= 1e5
    return [700, 1300]


def _dynamics(
    name: str, make: Any, faulty: Callable[[], keras.Model], clean: Callable[[], keras.Model]
) -> Scenario:
    """A scenario whose fault is in the training setup; the clean twin fixes the setup."""
    return Scenario(
        name, make, lambda x, y: Setup(faulty(), x, y), lambda x, y: Setup(clean(), x, y)
    )


SCENARIOS = [
    _records("nan_inputs", _nan_inputs),
    _records("nan_targets", _nan_targets),
    _records("label_out_of_range", _new_class, classes=True),
    _records("input_outlier", _wrong_unit, optimizer=lambda: keras.optimizers.SGD(0.01)),
    _dynamics(
        "learning_rate_too_high",
        regression,
        lambda: _compiled(mlp(), keras.optimizers.SGD(0.5, momentum=0.9), "mse"),
        lambda: _compiled(mlp(), keras.optimizers.SGD(0.01, momentum=0.9), "mse"),
    ),
    _dynamics(
        "bad_initialization",
        regression,
        lambda: _compiled(
            mlp(init=keras.initializers.RandomNormal(stddev=8.0), depth=6), "adam", "mse"
        ),
        lambda: _compiled(mlp(depth=6), "adam", "mse"),
    ),
    _dynamics(
        "exploding_gradients",
        sequences,
        lambda: _compiled(rnn(1.6), keras.optimizers.SGD(0.01), "mse"),
        lambda: _compiled(rnn(1.0), keras.optimizers.SGD(0.01), "mse"),
    ),
]


def score(model: keras.Model, x: np.ndarray, y: np.ndarray, classes: bool) -> float:
    pred = model.predict(x, batch_size=512, verbose=0)
    if classes:
        return float(np.mean(np.argmax(pred, axis=1) == y))
    return float(np.mean(np.square(pred - y)))


def train(setup: Setup, epochs: int, guard: Any = None) -> float:
    start = time.perf_counter()
    setup.model.fit(
        setup.x,
        setup.y,
        batch_size=32,
        epochs=epochs,
        verbose=0,
        callbacks=[guard] if guard is not None else [],
    )
    return time.perf_counter() - start


def run(scenario: Scenario, epochs: int) -> dict[str, Any]:
    x, y = scenario.make(N, 0)
    test_x, test_y = scenario.make(HELD_OUT, 1)
    keras.utils.set_random_seed(0)
    faulty = scenario.faulty(x, y)
    guard = nanguard.Guard("heal", verbose=False, data=faulty.x)
    healed_seconds = train(faulty, epochs, guard)
    keras.utils.set_random_seed(0)
    clean = scenario.clean(x, y)
    clean_seconds = train(clean, epochs)
    report = guard.report.runs[0]
    return {
        "name": scenario.name,
        "status": report.status,
        "actions": sorted({i.action for i in report.incidents}),
        "healed": score(faulty.model, test_x, test_y, scenario.classes),
        "clean": score(clean.model, test_x, test_y, scenario.classes),
        "metric": "accuracy" if scenario.classes else "mse",
        "time": healed_seconds / clean_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--only", action="append", default=[])
    args = parser.parse_args()
    chosen = [s for s in SCENARIOS if not args.only or s.name in args.only]
    print(
        f"{'scenario':<24}{'status':<10}{'actions':<26}{'metric':<10}{'healed':>9}"
        f"{'clean':>9}{'gap':>9}{'time':>7}"
    )
    for scenario in chosen:
        r = run(scenario, args.epochs)
        gap = r["healed"] - r["clean"]
        print(
            f"{r['name']:<24}{r['status']:<10}{','.join(r['actions']):<26}{r['metric']:<10}"
            f"{r['healed']:>9.4f}{r['clean']:>9.4f}{gap:>+9.4f}{r['time']:>6.2f}x"
        )


if __name__ == "__main__":
    main()
