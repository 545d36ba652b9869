"""TFRecord files of ``tf.train.Example`` and ``tf.data.Dataset`` objects (TensorFlow imported
only here, and only when such an input is given)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from nanguard.audit.source import (
    AuditInputError,
    ChunkedShard,
    CorruptInput,
    Source,
    chunk_rows,
    one_line,
)

RECORD_BATCH = 1024
KINDS = ("float_list", "int64_list", "bytes_list")


def _layout(path: str) -> list[tuple[str, str, int]]:
    """(key, value kind, length) of each feature of the first record, by sorted key."""
    import tensorflow as tf

    try:
        first = next(iter(tf.data.TFRecordDataset(path).take(1)), None)
    except Exception as exc:
        raise AuditInputError(f"{path}: not a readable TFRecord file ({one_line(exc)})") from exc
    if first is None:
        raise AuditInputError(f"{path}: a TFRecord file with no record")
    try:
        example = tf.train.Example.FromString(first.numpy())
    except Exception as exc:
        raise AuditInputError(
            f"{path}: its records are not tf.train.Example ({one_line(exc)})"
        ) from exc
    layout = []
    for key in sorted(example.features.feature):
        feature = example.features.feature[key]
        kind = feature.WhichOneof("kind") or "float_list"
        layout.append((key, kind, len(getattr(feature, kind).value)))
    return layout


class TFRecordShard(ChunkedShard):
    start = None

    def __init__(self, path: str, layout: list[tuple[str, str, int]], label: str | None) -> None:
        self.path, self.layout, self.label = path, layout, label

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray | None, int]]:
        import tensorflow as tf

        features = [(k, kind, n) for k, kind, n in self.layout if k != self.label]
        width = sum(n for _, _, n in features)
        batches = iter(tf.data.TFRecordDataset(self.path).batch(RECORD_BATCH))
        row = 0
        while True:
            try:
                records = next(batches).numpy()
            except StopIteration:
                return
            except tf.errors.OpError as exc:
                raise CorruptInput(self.path, f"after record {row}: {one_line(exc)}") from exc
            x = np.empty((len(records), width))
            y = np.empty(len(records)) if self.label else None
            for i, raw in enumerate(records):
                try:
                    example = tf.train.Example.FromString(raw).features.feature
                except Exception as exc:
                    raise CorruptInput(self.path, f"record {row + i}: {one_line(exc)}") from exc
                column = 0
                for key, kind, n in features:
                    values = getattr(example[key], kind).value
                    if len(values) != n:
                        raise CorruptInput(
                            self.path,
                            f"record {row + i}: {key!r} has {len(values)} values, "
                            f"{n} in the first record",
                        )
                    x[i, column : column + n] = values
                    column += n
                if y is not None:
                    target = example[self.label]
                    values = target.float_list.value or target.int64_list.value
                    y[i] = values[0] if len(values) == 1 else np.nan
            yield x, y, row
            row += len(records)


def tfrecord_source(path: Path, label: str | None) -> Source:
    name = str(path)
    layout = _layout(name)
    keys = [k for k, _, _ in layout]
    if label is not None and label not in keys:
        raise AuditInputError(f"{name}: no feature {label!r} (it has {', '.join(keys)})")
    skipped = [k for k, kind, _ in layout if kind == "bytes_list" and k != label]
    numeric = [(k, kind, n) for k, kind, n in layout if kind != "bytes_list"]
    names = [k if n == 1 else f"{k}[{i}]" for k, _, n in numeric if k != label for i in range(n)]
    if not names:
        raise AuditInputError(f"{name}: no numeric feature to audit")
    notes = [f"{name}: bytes features not audited: {', '.join(skipped)}"] if skipped else []
    return Source(
        name,
        [TFRecordShard(name, numeric, label)],
        "tfrecord",
        feature_names=names,
        label_name=label,
        notes=notes,
    )


def _split_element(element: Any) -> tuple[Any, Any]:
    if isinstance(element, tuple | list) and len(element) in (2, 3):
        return element[0], element[1]
    return element, None


def _flatten(x: Any) -> np.ndarray:
    if isinstance(x, dict):
        parts = [np.asarray(x[k]) for k in sorted(x)]
        return np.concatenate([p.reshape(len(p), -1).astype(np.float64) for p in parts], 1)
    x = np.asarray(x)
    return x.reshape(len(x), -1)


def _batched(spec: Any) -> bool:
    """Whether each element is a batch (as ``fit`` takes it) rather than one sample."""
    import tensorflow as tf

    x_spec, y_spec = _split_element(spec)
    first = tf.nest.flatten(x_spec)[0]
    if first.shape.rank == 0:
        return False
    if first.shape[0] is None:
        return True
    if y_spec is not None:
        y_first = tf.nest.flatten(y_spec)[0]
        return y_first.shape.rank > 0 and y_first.shape[0] == first.shape[0]
    return False


class DatasetShard(ChunkedShard):
    """A ``tf.data.Dataset``, iterated once in this process (datasets do not pickle)."""

    start = None
    path = "<tf.data.Dataset>"

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray | None, int]]:
        dataset = self.dataset
        if not _batched(dataset.element_spec):  # one sample per element: batch them here
            dataset = dataset.batch(RECORD_BATCH)
        row = 0
        xs: list[np.ndarray] = []
        ys: list[np.ndarray] = []
        for element in dataset.as_numpy_iterator():
            x, y = _split_element(element)
            flat = _flatten(x)
            xs.append(flat)
            if y is not None:
                ys.append(np.asarray(y).reshape(len(flat), -1))
            if sum(len(a) for a in xs) >= chunk_rows(flat[0].nbytes if len(flat) else 1):
                yield _stack(xs, ys, row)
                row += sum(len(a) for a in xs)
                xs, ys = [], []
        if xs:
            yield _stack(xs, ys, row)


def _stack(
    xs: list[np.ndarray], ys: list[np.ndarray], row: int
) -> tuple[np.ndarray, np.ndarray | None, int]:
    return np.concatenate(xs), (np.concatenate(ys) if ys else None), row


def dataset_source(dataset: Any) -> Source:
    import tensorflow as tf

    if int(dataset.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
        raise ValueError("the dataset repeats forever; audit dataset.take(n) instead")
    x_spec, y_spec = _split_element(dataset.element_spec)
    if isinstance(x_spec, dict):
        names = []
        for key in sorted(x_spec):
            shape = x_spec[key].shape[1:] if _batched(dataset.element_spec) else x_spec[key].shape
            size = int(np.prod(shape)) if shape.is_fully_defined() else None
            names += [key] if size == 1 else [f"{key}[{i}]" for i in range(size or 0)]
        feature_names: list[str] | None = names or None
        sample_shape = None
    else:
        first = tf.nest.flatten(x_spec)[0]
        shape = first.shape[1:] if _batched(dataset.element_spec) else first.shape
        feature_names = None
        sample_shape = tuple(shape.as_list()) if shape.is_fully_defined() else None
    return Source(
        "<tf.data.Dataset>",
        [DatasetShard(dataset)],
        "dataset",
        feature_names=feature_names,
        sample_shape=sample_shape,
        label_name="y" if y_spec is not None else None,
    )
