"""Shared fixtures: quiet TensorFlow, fixed seeds, and unguarded reference runs."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from typing import Any

import keras
import numpy as np
import pytest


class Reference(keras.callbacks.Callback):
    """Unguarded run: the first step whose loss or weights went non-finite (or that raised),
    and the weights just before it."""

    def on_train_begin(self, logs: Any = None) -> None:
        self.step = -1
        self.first_bad: int | None = None
        self.before_bad = [w.copy() for w in self.model.get_weights()]

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        self.step += 1

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        weights = self.model.get_weights()
        loss = float(np.asarray(logs["loss"]))
        if not np.isfinite(loss) or not all(np.isfinite(w).all() for w in weights):
            self.first_bad = self.step
            self.model.stop_training = True
        else:
            self.before_bad = [w.copy() for w in weights]


def fit_reference(build: Any, seed: int = 0) -> tuple[Reference, Any]:
    """Train a scenario without nanguard; returns the reference and the error it raised."""
    keras.utils.set_random_seed(seed)
    case = build()
    ref = Reference()
    fit = {"epochs": 1, "verbose": 0, **case.fit}
    try:
        case.model.fit(case.x, case.y, callbacks=[ref], **fit)
    except Exception as exc:  # e.g. labels out of range raise on CPU
        ref.first_bad = ref.step
        return ref, exc
    return ref, None


def fit_guarded(build: Any, seed: int = 0, **guard_kwargs: Any) -> tuple[Any, Any]:
    import nanguard

    keras.utils.set_random_seed(seed)
    case = build()
    guard = nanguard.Guard(verbose=False, **guard_kwargs)
    fit = {"epochs": 1, "verbose": 0, **case.fit}
    case.model.fit(case.x, case.y, callbacks=[guard], **fit)
    return guard, case


@pytest.fixture
def reference() -> Any:
    return fit_reference


@pytest.fixture
def guarded() -> Any:
    return fit_guarded
