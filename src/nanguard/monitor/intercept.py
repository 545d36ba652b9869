"""Run a user's script up to its first training step, and stop it there (``lint``, ``lr-find``).

``keras.Model.fit`` and every Keras optimizer's ``apply`` (hand-written loops) are patched for
the duration: the first call raises :class:`Reached`, carrying the model and data it was given,
which ends the script without a single update. The script runs as ``nanguard run`` runs it
(:func:`nanguard.runscript.execute`).
"""

from __future__ import annotations

import inspect
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras


class Reached(BaseException):
    """The script reached training (a script's own ``except Exception`` does not swallow it)."""

    def __init__(self, kind: str, model: Any, x: Any, y: Any, batch_size: int | None) -> None:
        super().__init__(kind)
        self.kind, self.model, self.x, self.y, self.batch_size = kind, model, x, y, batch_size


@dataclass
class Outcome:
    reached: Reached | None
    code: int
    error: BaseException | None


def run_until_training(path: Path, args: list[str]) -> Outcome:
    from nanguard.probe.apply import guard_loops
    from nanguard.probe.trace import install_call_hooks
    from nanguard.runscript import execute

    original = keras.Model.__dict__.get("fit")
    signature = inspect.signature(keras.Model.fit)

    def fit(model: keras.Model, *a: Any, **kw: Any) -> Any:
        bound = signature.bind(model, *a, **kw).arguments
        raise Reached("fit", model, bound.get("x"), bound.get("y"), bound.get("batch_size"))

    def first_apply(optimizer: Any) -> None:
        from nanguard.probe.trace import take_batch

        batch = take_batch() or (None,)
        x, y = _eager(batch[0]), _eager(batch[1]) if len(batch) > 1 else None
        raise Reached("custom_loop", None, x, y, None)

    keras.Model.fit = fit
    install_call_hooks()
    guard_loops(first_apply)
    try:
        code, error = execute(path, args)
    finally:
        guard_loops(None)
        if original is not None:
            keras.Model.fit = original
        else:
            del keras.Model.fit
    if isinstance(error, Reached):
        if error.model is None:
            error.model = _model_in_frames(error)
        return Outcome(error, 0, None)
    return Outcome(None, code, error)


def _eager(value: Any) -> Any:
    """Concrete values only: a loop traced by ``tf.function`` hands over symbolic tensors."""
    import tensorflow as tf

    if value is None:
        return None
    leaves = tf.nest.flatten(value)
    if not all(isinstance(v, tf.Tensor) and hasattr(v, "numpy") for v in leaves):
        return None
    try:
        return tf.nest.map_structure(lambda t: t.numpy(), value)
    except (AttributeError, NotImplementedError, TypeError):
        return None


def _model_in_frames(error: BaseException) -> Any:
    """The Keras model the training loop uses: the innermost script frame that holds one."""
    frames = []
    tb = error.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for scope in (frame.f_locals, frame.f_globals):
            for value in scope.values():
                if isinstance(value, keras.Model):
                    return value
    return None


def print_script_error(error: BaseException, command: str, script: str) -> None:
    print(f"{command}: {script} raised before it trained:", file=sys.stderr)
    traceback.print_exception(type(error), error, error.__traceback__, limit=-3, file=sys.stderr)
