"""Map samples of the offending batch back to rows of the data the user passed to ``fit``.

By content, not by position: the batch kept in graph is compared row by row (NaN equal to NaN)
with the user's input array, so the answer holds whether ``fit`` shuffled or not.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_SAMPLES = 50


def leaves(value: Any) -> list[Any]:
    """The arrays of a (nested) batch in ``tf.nest`` order: dicts by sorted key, as Keras does."""
    import tensorflow as tf

    return [v for v in tf.nest.flatten(value) if v is not None]


def _first_array(value: Any) -> np.ndarray | None:
    found = leaves(value)
    if not found or not hasattr(found[0], "shape") or not hasattr(found[0], "dtype"):
        return None
    array = np.asarray(found[0])
    return array.reshape(len(array), -1) if array.ndim else None


def dataset_rows(source: Any, batch_x: Any, samples: list[int]) -> list[int] | None:
    """Rows of ``source`` equal to the given batch samples; None if any cannot be placed."""
    data, batch = _first_array(source), _first_array(batch_x)
    if data is None or batch is None or not samples or data.shape[1] != batch.shape[1]:
        return None
    rows = []
    for sample in samples[:MAX_SAMPLES]:
        wanted = batch[sample]
        same = data == wanted
        if data.dtype.kind == "f":
            same |= np.isnan(data) & np.isnan(wanted)
        hits = np.flatnonzero(same.all(axis=1))
        if len(hits) != 1:
            return None  # absent, or duplicated records: no single row to name
        rows.append(int(hits[0]))
    return rows
