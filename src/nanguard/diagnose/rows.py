"""Map samples of the offending batch back to rows of the data the user passed.

By content, not by position: the batch kept in graph is compared row by row (NaN equal to NaN)
with the user's input array, so the answer holds whether the data was shuffled or not. Sources:
the arrays given to ``fit``; a ``tf.data`` pipeline, traced back to the arrays it was sliced
from (``from_tensor_slices``); for hand-written loops, every array the script sliced into a
dataset (:class:`Candidates`, tried in turn).
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_SAMPLES = 50


class Candidates(list):  # type: ignore[type-arg]
    """Several possible sources of a batch (the newest last); the first that places it wins."""


def leaves(value: Any) -> list[Any]:
    """The arrays of a (nested) batch in ``tf.nest`` order: dicts by sorted key, as Keras does."""
    import tensorflow as tf

    return [v for v in tf.nest.flatten(value) if v is not None]


def _sliced_from(dataset: Any) -> Any:
    """The arrays a ``tf.data`` pipeline was sliced from, in its element structure, or None.

    Walks the pipeline back through its (private) ``_input_dataset`` links to a
    ``from_tensor_slices`` source; element-wise transforms that change values (``map``) make the
    content match fail later, which is the honest answer.
    """
    import tensorflow as tf

    seen = 0
    while dataset is not None and seen < 64:
        tensors = getattr(dataset, "_tensors", None)
        if tensors is not None and type(dataset).__name__ == "_TensorSliceDataset":
            arrays = [np.asarray(t) for t in tensors]
            return tf.nest.pack_sequence_as(dataset.element_spec, arrays)
        dataset = getattr(dataset, "_input_dataset", None)
        seen += 1
    return None


def _inputs_of(source: Any) -> Any:
    """The input part of a source: arrays as given to ``fit``, or a dataset's ``x``."""
    try:
        import tensorflow as tf

        is_dataset = isinstance(source, tf.data.Dataset)
    except ImportError:  # pragma: no cover - the guard always runs with TensorFlow
        is_dataset = False
    if not is_dataset:
        return source
    element = _sliced_from(source)
    if isinstance(element, tuple) and element:
        return element[0]  # (x, y[, sample_weight])
    return element


def _arrays(value: Any) -> list[np.ndarray]:
    """The leaves of a batch or source as arrays of one row per sample (features flattened)."""
    out = []
    for leaf in leaves(value) if value is not None else []:
        if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype") or not np.ndim(leaf):
            return []
        array = np.asarray(leaf)
        out.append(array.reshape(len(array), -1))
    return out


def _same_rows(data: np.ndarray, wanted: np.ndarray, among: np.ndarray | None) -> np.ndarray:
    """Indices (within ``among``, or all rows) of ``data`` rows equal to ``wanted``, NaN == NaN."""
    rows = data if among is None else data[among]
    rows = rows.astype(wanted.dtype, copy=False)  # fit casts float64 to float32, say
    same = rows == wanted
    if wanted.dtype.kind == "f":
        same |= np.isnan(rows) & np.isnan(wanted)
    hits = np.flatnonzero(same.all(axis=1))
    return hits if among is None else among[hits]


def _match(data: list[np.ndarray], batch: list[np.ndarray], samples: list[int]) -> list[int] | None:
    """Rows of ``data`` holding each sample of ``batch`` (every input array must agree)."""
    if len(data) != len(batch) or any(
        d.shape[1] != b.shape[1] or len(d) != len(data[0]) for d, b in zip(data, batch, strict=True)
    ):
        return None
    rows = []
    for sample in samples[:MAX_SAMPLES]:
        hits = None
        for source, part in zip(data, batch, strict=True):
            hits = _same_rows(source, part[sample], hits)
            if len(hits) == 0:
                return None
        if hits is None or len(hits) != 1:
            return None  # absent, or duplicated records: no single row to name
        rows.append(int(hits[0]))
    return rows


def source_inputs(source: Any) -> np.ndarray | None:
    """The user's input array (its first one, one row per sample, flattened), when known."""
    candidates = list(reversed(source)) if isinstance(source, Candidates) else [source]
    for candidate in candidates:
        arrays = _arrays(_inputs_of(candidate))
        if arrays:
            return arrays[0]
    return None


def dataset_rows(source: Any, batch_x: Any, samples: list[int]) -> list[int] | None:
    """Rows of ``source`` equal to the given batch samples; None if any cannot be placed."""
    batch = _arrays(batch_x)
    if not batch or not samples:
        return None
    for candidate in reversed(source) if isinstance(source, Candidates) else [source]:
        rows = _match(_arrays(_inputs_of(candidate)), batch, samples)
        if rows is not None:
            return rows
    return None
