"""One batch of the user's data, kept cheaply for pre-flight checks and activation statistics.

Taken from what ``fit`` was given (arrays, a ``tf.data.Dataset`` or a ``keras.utils.PyDataset``)
without touching the training pipeline: arrays are sliced, a dataset is read once from a fresh
iterator. Generators cannot be re-read, so they give none.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Batch:
    x: Any
    y: Any = None


def _is_array(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "__getitem__") and len(value.shape) > 0


def _head(value: Any, n: int) -> Any:
    if value is None:
        return None
    if isinstance(value, dict):
        return {k: _head(v, n) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_head(v, n) for v in value)
    return np.asarray(value[:n]) if _is_array(value) else None


def first_batch(
    x: Any, y: Any = None, batch_size: int | None = None, *, datasets: bool = True
) -> Batch | None:
    """The first ``batch_size`` samples of ``x`` (and ``y``), or a dataset's first batch.

    ``datasets=False`` during training: reading a ``tf.data`` pipeline once more advances its
    reshuffle seed, and a ``PyDataset`` may draw random augmentations, so either would change
    what training sees; arrays are only sliced.
    """
    if x is None:
        return None
    import keras

    tf = sys.modules.get("tensorflow")  # a dataset exists only where TensorFlow was imported
    if tf is not None and isinstance(x, tf.data.Dataset):
        if not datasets:
            return None
        element = next(iter(x.take(1)), None)
        return None if element is None else _unpack(tf.nest.map_structure(np.asarray, element))
    if isinstance(x, keras.utils.PyDataset):
        return _unpack(x[0]) if datasets and len(x) else None
    n = batch_size or 32
    head = _head(x, n)
    if head is None or (isinstance(x, list | tuple | dict) and not _all_arrays(head)):
        return None
    return Batch(head, _head(y, n))


def _all_arrays(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_all_arrays(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_all_arrays(v) for v in value)
    return value is not None


def _unpack(element: Any) -> Batch:
    import keras

    if isinstance(element, tuple | list) and 1 <= len(element) <= 3:
        x, y, _ = keras.utils.unpack_x_y_sample_weight(tuple(element))
        return Batch(x, y)
    return Batch(element)


FIT_LOCALS = ("x", "y", "batch_size", "val_x", "val_y", "validation_split", "validation_steps")


def fit_arguments() -> dict[str, Any] | None:
    """``x``, ``y``, ``batch_size`` and the validation data (``val_x``, ``val_y``,
    ``validation_split``, ``validation_steps``) of the Keras ``fit`` call on this thread's stack.

    A callback is not given the data; the trainer's own frame holds it (after its validation
    split), so the guard can keep a batch without asking the user to pass the data twice.
    """
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "fit" and "keras" in code.co_filename and "trainer" in code.co_filename:
            local = frame.f_locals
            if "x" in local:
                return {k: local.get(k) for k in FIT_LOCALS}
        frame = frame.f_back
    return None
