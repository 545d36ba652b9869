"""CSV and Parquet files, streamed in record batches with pyarrow.

Numeric columns are the features (as float64; empty or null cells become NaN, which the audit
reports as non-finite: a model sees them so). A column of numbers with a few cells that are not
(``oops``, ``1,5``) is numeric, and those cells are NaN at their rows. Text columns cannot reach a
model unencoded and are listed as not audited. A file that cannot be parsed (a row with too many
fields) is a ``corrupt_file`` finding; the rows before it are still audited.
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from nanguard.audit.partial import Partial, Settings
from nanguard.audit.source import (
    AuditInputError,
    ChunkedShard,
    CorruptInput,
    Shard,
    Source,
    one_line,
)

CSV_BLOCK = 8 << 20
PARQUET_BATCH = 65_536


def _numeric(arrow_type: object) -> bool:
    import pyarrow.types as pt

    return bool(
        pt.is_integer(arrow_type)
        or pt.is_floating(arrow_type)
        or pt.is_boolean(arrow_type)
        or pt.is_null(arrow_type)
        or pt.is_decimal(arrow_type)
    )


def _number(cell: str | None) -> float:
    try:
        return float(cell)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return np.nan


def _column(batch: Any, name: str) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.types as pt

    column = batch.column(name)
    if pt.is_string(column.type):  # a column with cells that are not numbers: cell by cell
        return np.array([_number(c) for c in column.to_pylist()], np.float64)
    return column.cast(pa.float64()).to_numpy(zero_copy_only=False)


def _to_numpy(batch: Any, columns: list[str], out: np.ndarray | None = None) -> np.ndarray:
    """The feature columns as one (features, rows) float64 array: each column is copied once,
    contiguous, where a (rows, features) array would need a strided copy per column and give
    the statistics short rows to loop over. ``out`` is a buffer to reuse when big enough."""
    shape = (len(columns), batch.num_rows)
    if out is None or out.size < shape[0] * shape[1]:
        out = np.empty(shape)
    x = out.reshape(-1)[: shape[0] * shape[1]].reshape(shape)
    for i, name in enumerate(columns):
        x[i] = _column(batch, name)
    return x


def _label_values(batch: Any, label: str | None) -> np.ndarray | None:
    return None if label is None else _column(batch, label)


def _split(
    path: str, names: list[str], types: list[object], label: str | None
) -> tuple[list[str], list[str]]:
    """(numeric feature columns, text columns); checks the label column."""
    numeric = [n for n, t in zip(names, types, strict=True) if _numeric(t)]
    text = [n for n in names if n not in numeric]
    if label is not None:
        if label not in names:
            raise AuditInputError(f"{path}: no column {label!r} (it has {', '.join(names[:20])})")
        if label not in numeric:
            raise AuditInputError(f"{path}: label column {label!r} is not numeric")
        numeric.remove(label)
    if not numeric:
        raise AuditInputError(f"{path}: no numeric column to audit")
    return numeric, text


class _Unparseable(Exception):
    def __init__(self, column: str) -> None:
        self.column = column


class CsvShard(ChunkedShard):
    """A CSV file, streamed. A cell that does not parse as a number (``oops`` in a numeric
    column) becomes NaN at its row: the file is read again with that column parsed cell by
    cell, so the finding names the exact row instead of losing the block.

    The file is cut at line ends into pieces of about ``CSV_BLOCK`` bytes that a few threads
    parse at once (pyarrow releases the GIL), taken in file order with a bounded lookahead:
    pyarrow's streaming reader parses one block at a time, half the speed of ``read_csv`` on
    two cores, and ``read_csv`` holds the whole table. Newlines end rows, as pyarrow assumes by
    default (``newlines_in_values=False``)."""

    start = None  # rows known only once read
    axis = 1

    def __init__(self, path: str, columns: list[str], label: str | None, names: list[str]) -> None:
        self.path, self.columns, self.label = path, columns, label
        self.names = names  # every column of the header, to parse the pieces after the first
        self.loose: set[str] = set()

    def scan(self, settings: Settings, offset: int) -> Partial:
        while True:
            try:
                return super().scan(settings, offset)
            except _Unparseable as exc:
                self.loose.add(exc.column)

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray | None, int]]:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        wanted = [*self.columns, *([self.label] if self.label else [])]
        convert = pacsv.ConvertOptions(
            column_types={n: pa.string() if n in self.loose else pa.float64() for n in wanted},
            include_columns=wanted,
        )
        row = 0
        buffer = None
        try:
            for table in self._pieces(convert):
                buffer = _to_numpy(table, self.columns, buffer)
                yield buffer, _label_values(table, self.label), row
                row += table.num_rows
        except pa.ArrowInvalid as exc:
            found = re.search(r"CSV column #(\d+)", str(exc))
            if found and int(found.group(1)) < len(wanted):
                name = wanted[int(found.group(1))]
                if name not in self.loose:
                    raise _Unparseable(name) from exc
            why = re.sub(r"Row #\d+: ", "", one_line(exc))  # counted from the piece's start
            raise CorruptInput(self.path, f"after row {row}: {why}") from exc
        except OSError as exc:
            raise CorruptInput(self.path, f"after row {row}: {one_line(exc)}") from exc

    def _pieces(self, convert: Any) -> Iterator[Any]:
        """The parsed pieces in file order; at most ``2 * threads`` are held at once. Piece
        ``k`` ends at the last line end before byte ``k * CSV_BLOCK``, where the streaming
        reader ends its blocks, so a row that cannot be parsed loses the same rows as it."""
        threads = max(1, min(os.cpu_count() or 1, 4))
        size = os.path.getsize(self.path)
        pending: deque[Future[Any]] = deque()
        with open(self.path, "rb") as f, ThreadPoolExecutor(threads) as pool:
            try:
                begin, k = 0, 1
                while begin < size or pending:
                    while begin < size and len(pending) < 2 * threads:
                        end = _line_end(f, begin, k * CSV_BLOCK, size)
                        pending.append(pool.submit(self._parse, begin, end, convert))
                        begin, k = end, max(k, end // CSV_BLOCK) + 1
                    yield pending.popleft().result()
            finally:
                for future in pending:
                    future.cancel()

    def _parse(self, begin: int, end: int, convert: Any) -> Any:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        with open(self.path, "rb") as f:
            f.seek(begin)
            data = f.read(end - begin)
        options = pacsv.ReadOptions(
            use_threads=False,
            block_size=len(data) + 1,
            column_names=None if begin == 0 else self.names,
        )
        reader = pacsv.open_csv(
            pa.BufferReader(data), read_options=options, convert_options=convert
        )
        return reader.read_all()


def _line_end(f: BinaryIO, begin: int, at: int, size: int) -> int:
    """Where a piece that starts at ``begin`` ends: just past the last newline before ``at``,
    or past the first one after it for a line longer than the piece; ``size`` at the end."""
    if at >= size:
        return size
    high = at
    while high > begin:
        low = max(begin, high - (1 << 16))
        f.seek(low)
        found = f.read(high - low).rfind(b"\n")
        if found >= 0:
            return low + found + 1
        high = low
    while at < size:
        f.seek(at)
        window = f.read(1 << 16)
        found = window.find(b"\n")
        if found >= 0:
            return at + found + 1
        at += len(window)
    return size


def _mostly_numbers(column: object, share: float = 0.9) -> bool:
    """A text column whose cells are mostly numbers: a numeric column with a few bad cells."""
    cells = [c for c in column.to_pylist()[:1000] if c is not None]  # type: ignore[attr-defined]
    good = 0
    for cell in cells:
        try:
            float(cell)
            good += 1
        except ValueError:
            continue
    return bool(cells) and good >= share * len(cells)


def csv_source(path: Path, label: str | None) -> Source:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    name = str(path)
    try:
        reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=CSV_BLOCK))
        schema = reader.schema
        first = reader.read_next_batch() if any(not _numeric(t) for t in schema.types) else None
    except StopIteration:
        first = None
    except Exception as exc:
        raise AuditInputError(f"{name}: not a readable CSV file ({one_line(exc)})") from exc
    types = [
        t if _numeric(t) or first is None or not _mostly_numbers(first.column(n)) else pa.float64()
        for n, t in zip(schema.names, schema.types, strict=True)
    ]
    numeric, text = _split(name, schema.names, types, label)
    notes = [f"{name}: text columns not audited: {', '.join(text)}"] if text else []
    return Source(
        name,
        [CsvShard(name, numeric, label, schema.names)],
        "table",
        feature_names=numeric,
        label_name=label,
        notes=notes,
    )


class ParquetShard(ChunkedShard):
    axis = 1

    def __init__(
        self, path: str, groups: list[int], start: int, columns: list[str], label: str | None
    ) -> None:
        self.path, self.groups, self.start = path, groups, start
        self.columns, self.label = columns, label

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray | None, int]]:
        import pyarrow.parquet as pq

        wanted = [*self.columns, *([self.label] if self.label else [])]
        assert self.start is not None
        row = self.start
        try:
            buffer = None
            with pq.ParquetFile(self.path) as f:
                for batch in f.iter_batches(PARQUET_BATCH, row_groups=self.groups, columns=wanted):
                    buffer = _to_numpy(batch, self.columns, buffer)
                    yield buffer, _label_values(batch, self.label), row
                    row += batch.num_rows
        except (OSError, ValueError) as exc:
            raise CorruptInput(self.path, f"after row {row}: {one_line(exc)}") from exc


def parquet_source(path: Path, label: str | None, shards: int) -> Source:
    import pyarrow.parquet as pq

    name = str(path)
    try:
        with pq.ParquetFile(path) as f:
            schema = f.schema_arrow
            sizes = [f.metadata.row_group(i).num_rows for i in range(f.num_row_groups)]
    except Exception as exc:
        raise AuditInputError(f"{name}: not a readable Parquet file ({one_line(exc)})") from exc
    numeric, text = _split(name, schema.names, schema.types, label)
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    parts = np.array_split(np.arange(len(sizes)), max(1, min(shards, len(sizes))))
    pieces: list[Shard] = [
        ParquetShard(name, part.tolist(), int(starts[part[0]]), numeric, label)
        for part in parts
        if len(part)
    ]
    notes = [f"{name}: text columns not audited: {', '.join(text)}"] if text else []
    return Source(
        name,
        pieces,
        "table",
        feature_names=numeric,
        label_name=label,
        notes=notes,
    )
