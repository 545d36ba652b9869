"""What every reader produces: a :class:`Source` cut into picklable :class:`Shard` objects."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from nanguard.audit.partial import Partial, Settings
from nanguard.audit.rowset import RowSet
from nanguard.audit.stats import as_float

CHUNK_BYTES = 4 << 20  # rows per chunk: about this many bytes, so repeated passes stay in cache


class AuditInputError(Exception):
    """Input the audit cannot start on (missing, unknown format, bad header): one line, exit 2."""


class CorruptInput(Exception):
    """Part of the input cannot be read; the audit records it as a finding and goes on."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class Shard(ABC):
    """A piece of a source that can be scanned alone (in another process, or on a Dask worker).

    ``start`` is its first row within the source, or None for a stream whose length is known
    only after reading it (then shards are scanned one after the other).
    """

    start: int | None = 0

    @abstractmethod
    def scan(self, settings: Settings, offset: int) -> Partial:
        """The partial statistics of this shard, rows numbered from ``offset``."""


class ChunkedShard(Shard):
    """A shard read as a sequence of chunks of rows."""

    path: str = ""
    # 1: chunks come as (features, rows), each feature contiguous: what columnar readers
    # (tables, few features) produce without a transpose, and the fast layout for them.
    axis = 0

    @abstractmethod
    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray | None, int]]:
        """(x, y, first row) per chunk; x has shape (rows, ...) (``axis`` 1: (features, rows))
        and y (rows, ...) or None."""

    def _flat(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        return as_float(x.reshape(len(x), -1) if self.axis == 0 else x)

    def rows_ahead(self) -> tuple[int, int] | None:
        """The rows ``chunks`` will give, when known before reading them, else None."""
        return None

    def scan(self, settings: Settings, offset: int) -> Partial:
        partial = Partial(settings)
        ahead = self.rows_ahead()
        if ahead is not None:
            partial.plan(ahead[0] + offset, ahead[1] + offset)
        try:
            for x, y, start in self.chunks():
                y = None if y is None else np.asarray(y)
                partial.add(self._flat(x), y, start + offset, self.axis)
        except CorruptInput as exc:
            partial.corrupt.append((exc.path, exc.reason))
        partial.finish()
        return partial

    def find_rows(
        self, features: np.ndarray, low: np.ndarray, high: np.ndarray, offset: int
    ) -> dict[int, RowSet]:
        """Second pass: the rows where ``features`` fall outside ``[low, high]``."""
        found = {int(f): RowSet() for f in features}
        try:
            for x, _, start in self.chunks():
                if self.axis == 0:
                    values = np.asarray(x).reshape(len(x), -1)[:, features]
                    rows, which = np.nonzero((values > high) | (values < low))
                else:
                    values = np.asarray(x)[features]
                    which, rows = np.nonzero((values > high[:, None]) | (values < low[:, None]))
                for i, f in enumerate(features):
                    found[int(f)].add(rows[which == i] + start + offset)
        except CorruptInput:
            pass  # the first pass reported it; the rows before it were searched
        return found


def chunk_rows(row_bytes: int) -> int:
    return max(1, CHUNK_BYTES // max(row_bytes, 1))


@dataclass
class Source:
    """One input (a file, a folder, arrays) ready to scan."""

    name: str
    shards: list[Shard]
    kind: str  # "array" | "table" | "images" | "tfrecord" | "dataset"
    feature_names: list[str] | None = None  # None: flat feature positions 0..width-1
    sample_shape: tuple[int, ...] | None = None
    label_name: str | None = None
    num_classes: int | None = None  # known from the source itself (image subfolders)
    class_names: list[str] | None = None
    rows_of: Callable[[np.ndarray], np.ndarray] | None = None  # random access, when cheap
    files: list[str] | None = None  # the file of each row (image folders)
    size: int | None = None  # rows, when known before reading
    notes: list[str] = field(default_factory=list)

    @property
    def image_like(self) -> bool:
        return self.kind == "images" or (
            self.sample_shape is not None and len(self.sample_shape) >= 2
        )
