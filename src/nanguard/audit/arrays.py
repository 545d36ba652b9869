"""``.npy`` and ``.npz`` files, read in fixed-size chunks, and label files.

A ``.npy`` is read with ``readinto`` into one reused buffer, by row ranges that separate
processes can take: resident memory stays at a few chunks whatever the file size (a memory map
would instead keep every page it touched resident until the kernel reclaims it). Members of an
``.npz`` are streamed out of the zip, compressed or not.
"""

from __future__ import annotations

import itertools
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

from nanguard.audit.source import (
    AuditInputError,
    ChunkedShard,
    CorruptInput,
    Shard,
    Source,
    chunk_rows,
    one_line,
)

SHARD_BYTES = 256 << 20
LABEL_MEMBERS = ("y", "labels", "label", "targets", "target", "y_train")
INPUT_MEMBERS = ("x", "x_train", "inputs", "features", "data", "images", "X")


def _header(fp: IO[bytes], name: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
    except Exception as exc:
        raise AuditInputError(f"{name}: not a readable .npy array ({one_line(exc)})") from exc
    if dtype.kind not in "biuf" or dtype.fields is not None:
        raise AuditInputError(f"{name}: holds {dtype} values; the audit reads numbers")
    if not shape:
        raise AuditInputError(f"{name}: holds a single value, not rows of samples")
    return tuple(shape), fortran, dtype


class NpyShard(ChunkedShard):
    """Rows [start, stop) of a C-order ``.npy``; labels (if any) for those rows."""

    def __init__(
        self,
        path: str,
        offset: int,
        shape: tuple[int, ...],
        dtype: np.dtype,
        start: int,
        stop: int,
        labels: np.ndarray | None,
    ) -> None:
        self.path, self.offset, self.shape, self.dtype = path, offset, shape, dtype
        self.start, self.stop, self.labels = start, stop, labels

    def rows_ahead(self) -> tuple[int, int] | None:
        """Rows [start, stop), or fewer when the file is cut short (the chunks stop there)."""
        assert self.start is not None
        row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        present = (os.path.getsize(self.path) - self.offset) // max(row_bytes, 1)
        return self.start, max(self.start, min(self.stop, present))

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray | None, int]]:
        width = int(np.prod(self.shape[1:], dtype=np.int64))
        row_bytes = width * self.dtype.itemsize
        step = chunk_rows(row_bytes)
        buffer = np.empty(step * width, self.dtype)
        assert self.start is not None
        with open(self.path, "rb", buffering=0) as f:
            f.seek(self.offset + self.start * row_bytes)
            row = self.start
            while row < self.stop:
                n = min(step, self.stop - row)
                view = memoryview(buffer.view(np.uint8))[: n * row_bytes]
                got = _read_fully(f, view)
                whole = got // row_bytes
                x = buffer[: whole * width].reshape(whole, width)
                y = None if self.labels is None else self.labels[row : row + whole]
                yield x, y, row
                if whole < n:
                    raise CorruptInput(
                        self.path, f"the file ends at row {row + whole} of {self.shape[0]}"
                    )
                row += n


def _read_fully(f: IO[bytes], view: memoryview) -> int:
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            break
        got += n
    return got


def npy_source(path: Path, labels: np.ndarray | None, shards: int) -> Source:
    name = str(path)
    with open(path, "rb") as f:
        shape, fortran, dtype = _header(f, name)
        offset = f.tell()
    if fortran and len(shape) > 1:
        raise AuditInputError(f"{name}: Fortran-order arrays are not supported; save it C-order")
    rows = shape[0]
    _check_labels(name, labels, rows)
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    parts = min(shards, max(1, rows * row_bytes // SHARD_BYTES))  # worth a process each
    bounds = np.linspace(0, rows, max(1, min(parts, rows)) + 1).astype(int)
    pieces: list[Shard] = [
        NpyShard(name, offset, shape, dtype, int(a), int(b), None if labels is None else labels)
        for a, b in itertools.pairwise(bounds)
    ]

    present = min(rows, (path.stat().st_size - offset) // max(row_bytes, 1))  # truncated file

    def rows_of(index: np.ndarray) -> np.ndarray:
        data = np.memmap(name, dtype, "r", offset, (present, *shape[1:]))
        return np.asarray(data[np.sort(index)]).reshape(len(index), -1)

    return Source(
        name,
        pieces,
        "array",
        sample_shape=shape[1:],
        rows_of=rows_of if present else None,
        size=present,
    )


class NpzShard(ChunkedShard):
    def __init__(self, path: str, member: str, labels: np.ndarray | None) -> None:
        self.path, self.member, self.labels = path, member, labels

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray | None, int]]:
        with zipfile.ZipFile(self.path) as zf, zf.open(self.member + ".npy") as fp:
            shape, _, dtype = _header(fp, f"{self.path}:{self.member}")
            width = int(np.prod(shape[1:], dtype=np.int64))
            row_bytes = width * dtype.itemsize
            step = chunk_rows(row_bytes)
            row = 0
            while row < shape[0]:
                n = min(step, shape[0] - row)
                try:
                    raw = fp.read(n * row_bytes)
                except (zipfile.BadZipFile, OSError, EOFError) as exc:
                    raise CorruptInput(self.path, f"{self.member}: {one_line(exc)}") from exc
                whole = len(raw) // row_bytes
                x = np.frombuffer(raw, dtype, whole * width).reshape(whole, width)
                y = None if self.labels is None else self.labels[row : row + whole]
                yield x, y, row
                if whole < n:
                    raise CorruptInput(self.path, f"{self.member} ends at row {row + whole}")
                row += n


def npz_source(path: Path, labels_arg: str | None, labels: np.ndarray | None) -> Source:
    name = str(path)
    try:
        with zipfile.ZipFile(path) as zf:
            members = [m[:-4] for m in zf.namelist() if m.endswith(".npy")]
            shapes = {}
            for member in members:
                with zf.open(member + ".npy") as fp:
                    shapes[member] = _header(fp, f"{name}:{member}")[0]
    except (zipfile.BadZipFile, OSError) as exc:
        raise AuditInputError(f"{name}: not a readable .npz archive ({one_line(exc)})") from exc
    label_member = None
    if labels is None:
        if labels_arg is not None:
            if labels_arg not in members:
                raise AuditInputError(
                    f"{name}: no array named {labels_arg!r} (it has {', '.join(members)})"
                )
            label_member = labels_arg
        else:
            label_member = next((m for m in LABEL_MEMBERS if m in members), None)
    inputs = [m for m in members if m != label_member]
    if not inputs:
        raise AuditInputError(f"{name}: no input array in it")
    member = next((m for m in INPUT_MEMBERS if m in inputs), inputs[0])
    if label_member is not None:
        with np.load(path) as archive:
            labels = archive[label_member]
    _check_labels(f"{name}:{member}", labels, shapes[member][0])
    note = f"{name}: audited array {member!r}"
    if label_member:
        note += f" with labels {label_member!r}"
    if len(inputs) > 1:
        note += f"; not audited: {', '.join(m for m in inputs if m != member)}"
    notes = [note]
    return Source(
        name,
        [NpzShard(name, member, labels)],
        "array",
        sample_shape=shapes[member][1:],
        label_name=label_member,
        notes=notes,
    )


def _check_labels(name: str, labels: np.ndarray | None, rows: int) -> None:
    if labels is not None and len(labels) != rows:
        raise AuditInputError(f"{name}: {rows} rows but {len(labels)} labels")


def load_label_file(path: Path) -> np.ndarray:
    """Labels given as a file: a ``.npy`` array or a one-column ``.csv`` (with or without a
    header line)."""
    name = str(path)
    labels = _read_labels(path, name)
    if labels.dtype.kind not in "biuf":
        raise AuditInputError(f"{name}: labels must be numbers, not {labels.dtype}")
    return labels


def _read_labels(path: Path, name: str) -> np.ndarray:
    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if path.suffix == ".csv":
            import pyarrow.csv as pacsv

            table = pacsv.read_csv(path)
            if table.num_columns != 1:
                raise AuditInputError(
                    f"{name}: a labels file needs one column, not {table.num_columns}"
                )
            if _is_number(table.column_names[0]):  # no header: the first line is a label
                options = pacsv.ReadOptions(autogenerate_column_names=True)
                table = pacsv.read_csv(path, read_options=options)
            return table.column(0).to_numpy(zero_copy_only=False)
    except AuditInputError:
        raise
    except Exception as exc:
        raise AuditInputError(f"{name}: cannot read labels ({one_line(exc)})") from exc
    raise AuditInputError(f"{name}: labels must be a .npy or one-column .csv file")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
