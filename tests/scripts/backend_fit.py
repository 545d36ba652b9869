"""Guarded and unguarded ``fit`` of tests/faults.py scenarios on this process's Keras backend.

Run with KERAS_BACKEND set (Keras picks its backend at import). TensorFlow is made unimportable
first: the guard must not need it on JAX or PyTorch. Each argument is ``SCENARIO:POLICY``; one
JSON line is printed per argument with what tests/test_backends.py checks: the unguarded
reference (first non-finite step, weights before it) and the guarded run's report and weights.
The argument ``heal`` prints the error that ``Guard(policy="heal")`` raises; ``audit`` the report of
``Guard(audit=True)`` on a NaN record.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.modules["tensorflow"] = None  # type: ignore[assignment]  # any import of it now fails

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from faults import FAULTS, HEALTHY, Case, _regression, nan_input  # noqa: E402

import nanguard  # noqa: E402


def nan_storm() -> Case:
    """Every batch has a NaN: the skip budget must stop it."""
    case = nan_input()
    case.x[::16, 0] = np.nan
    return case


def late_nan() -> Case:
    """One NaN record at step 937 of 1250 short steps: many steps run between two polls."""
    rng = np.random.default_rng(40)
    x = rng.normal(size=(20000, 32)).astype("float32")
    y = x[:, :1] * 0.5
    x[15000, 3] = np.nan
    model = keras.Sequential(
        [keras.Input((32,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1)]
    )
    model.compile("adam", "mse")
    return Case(model, x, y, {"batch_size": 16, "shuffle": False})


def nan_validation() -> Case:
    """Healthy training, one NaN record in the validation data: ``val_loss`` is NaN."""
    case = HEALTHY["healthy_classifier"]()
    x_val = case.x[:40].copy()
    x_val[7, 1] = np.nan
    case.fit = {**case.fit, "validation_data": (x_val, case.y[:40])}
    return case


def nan_checkpoint() -> Case:
    """Weights restored from a checkpoint saved after a NaN: one value of the hidden kernel is
    NaN before the first step, so every step is NaN though every batch is finite."""
    x, y = _regression(np.random.default_rng(3))
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8, name="hidden"), keras.layers.Dense(1)]
    )
    weights = model.get_weights()
    weights[0][2, 3] = np.nan
    model.set_weights(weights)
    model.compile("adam", "mse")
    return Case(model, x, y, {"batch_size": 32, "shuffle": False})


def overflowing_update() -> Case:
    """Finite loss and gradients, but learning rate x gradient past float32 at the first update:
    the weights, not the loss, go non-finite first."""
    x, y = _regression(np.random.default_rng(3))
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(1e37), "mse")
    return Case(model, x * 1e4, y, {"batch_size": 32, "shuffle": False})


SCENARIOS = {
    **FAULTS,
    **HEALTHY,
    "nan_storm": nan_storm,
    "late_nan": late_nan,
    "nan_validation": nan_validation,
    "nan_checkpoint": nan_checkpoint,
    "overflowing_update": overflowing_update,
}


class Reference(keras.callbacks.Callback):
    """Unguarded: the first step whose loss or weights went non-finite, the weights before it."""

    def on_train_begin(self, logs: Any = None) -> None:
        self.step, self.first_bad = -1, None
        self.before_bad = self.model.get_weights()

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        self.step += 1

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        weights = self.model.get_weights()
        if not np.isfinite(float(logs["loss"])) or not all(np.isfinite(w).all() for w in weights):
            self.first_bad = self.step
            self.model.stop_training = True
        else:
            self.before_bad = weights


def fit(name: str, callbacks: list[Any]) -> tuple[keras.Model, float]:
    keras.utils.set_random_seed(0)
    case = SCENARIOS[name]()
    began = time.perf_counter()
    case.model.fit(case.x, case.y, verbose=0, callbacks=callbacks, **{"epochs": 1, **case.fit})
    return case.model, time.perf_counter() - began


def _max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.max(np.abs(x.astype(np.float64) - y))) for x, y in zip(a, b, strict=True))


def check(name: str, policy: str) -> dict[str, Any]:
    ref = Reference()
    plain, _ = fit(name, [ref])
    guard = nanguard.Guard(policy=policy, verbose=False, max_consecutive=3)
    model, _ = fit(name, [guard])
    weights = model.get_weights()
    return {
        "reference_first_bad": ref.first_bad,
        "run": json.loads(guard.report.to_json())["runs"][0],
        "weights_finite": all(np.isfinite(w).all() for w in weights),
        "diff_to_before_bad": _max_diff(weights, ref.before_bad),
        "equal_to_before_bad": all(map(np.array_equal, weights, ref.before_bad)),
        "equal_to_unguarded": all(map(np.array_equal, weights, plain.get_weights())),
    }


def audit() -> dict[str, Any]:
    """``Guard(audit=True)`` on a NaN record at row 133: the audit names it before training."""
    guard = nanguard.Guard(audit=True, verbose=False)
    fit("nan_input", [guard])
    return {"run": json.loads(guard.report.to_json())["runs"][0]}


def heal() -> dict[str, Any]:
    try:
        nanguard.Guard(policy="heal")
    except ValueError as exc:
        return {"error": str(exc)}
    return {"error": None}


if __name__ == "__main__":
    for spec in sys.argv[1:]:
        special = {"heal": heal, "audit": audit}
        out = special[spec]() if spec in special else check(*spec.split(":"))
        print(json.dumps({"spec": spec, "backend": keras.backend.backend(), **out}), flush=True)
