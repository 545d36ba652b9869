"""In-memory inputs of ``nanguard.audit(x, y)``: NumPy arrays, lists, several inputs (a dict,
list or tuple of arrays), pandas."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from nanguard.audit.source import ChunkedShard, Source, chunk_rows


class ArrayShard(ChunkedShard):
    path = "<array>"

    def __init__(self, x: np.ndarray, y: np.ndarray | None) -> None:
        self.x, self.y, self.start = x, y, 0

    def rows_ahead(self) -> tuple[int, int] | None:
        return 0, len(self.x)

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray | None, int]]:
        step = chunk_rows(self.x[0].nbytes if len(self.x) else 1)
        for row in range(0, len(self.x), step):
            y = None if self.y is None else self.y[row : row + step]
            yield self.x[row : row + step], y, row


def _is_dataframe(value: Any) -> bool:
    return type(value).__module__.startswith("pandas") and hasattr(value, "columns")


def _is_series(value: Any) -> bool:
    return (
        type(value).__module__.startswith("pandas")
        and hasattr(value, "to_numpy")
        and not (hasattr(value, "columns"))
    )


def is_several_inputs(x: Any) -> bool:
    """A list or tuple of arrays: Keras' several inputs (rows would be lists of numbers)."""
    return isinstance(x, list | tuple) and bool(x) and all(hasattr(v, "shape") for v in x)


def memory_source(x: Any, y: Any) -> Source:
    names: list[str] | None = None
    label_name = None if y is None else "y"
    if _is_dataframe(x):
        if isinstance(y, str):
            if y not in x.columns:
                raise ValueError(f"no column {y!r} in the DataFrame")
            label_name, y = y, x[y]
            x = x.drop(columns=[label_name])
        numeric = [c for c in x.columns if x[c].dtype.kind in "biuf"]
        if not numeric:
            raise ValueError("the DataFrame has no numeric column")
        names = [str(c) for c in numeric]
        array = x[numeric].to_numpy(np.float64)
        sample_shape: tuple[int, ...] | None = (len(names),)
    elif _is_series(x):
        names = [str(x.name) if x.name is not None else "0"]
        array = x.to_numpy(np.float64).reshape(-1, 1)
        sample_shape = (1,)
    elif isinstance(x, dict) or is_several_inputs(x):
        if not isinstance(x, dict):  # named by position, as Keras takes several inputs
            x = {f"input {i}": v for i, v in enumerate(x)}
        parts = {k: np.asarray(v) for k, v in sorted(x.items())}
        names = []
        for key, part in parts.items():
            size = int(np.prod(part.shape[1:]))
            names += [str(key)] if size == 1 else [f"{key}[{i}]" for i in range(size)]
        array = np.concatenate(
            [p.reshape(len(p), -1).astype(np.float64) for p in parts.values()], 1
        )
        sample_shape = (array.shape[1],)
    else:
        array = np.asarray(x)
        if array.ndim == 0:
            raise ValueError("x is a single value, not rows of samples")
        sample_shape = array.shape[1:]
    if array.dtype.kind not in "biuf":
        raise ValueError(f"x holds {array.dtype} values; the audit reads numbers")
    labels = None
    if y is not None:
        labels = y.to_numpy() if hasattr(y, "to_numpy") else np.asarray(y)
        if labels.dtype.kind not in "biuf":
            raise ValueError(f"y holds {labels.dtype} values; labels must be numbers")
        if labels.ndim == 0 or len(labels) != len(array):
            raise ValueError(f"x has {len(array)} rows but y has {labels.size} values")
    flat = array.reshape(len(array), -1)

    def rows_of(index: np.ndarray) -> np.ndarray:
        return flat[np.sort(index)]

    return Source(
        "<array>",
        [ArrayShard(array, labels)],
        "array",
        feature_names=names,
        sample_shape=tuple(sample_shape),
        label_name=label_name,
        rows_of=rows_of,
        size=len(flat),
    )
