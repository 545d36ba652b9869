"""Everything one scan of one shard accumulates; partials of several shards merge into one.

A partial is what crosses process (or Dask worker) boundaries: it holds bounded state only,
never the data: per-feature :class:`~nanguard.audit.stats.Moments`, the sample,
the rows found by the row checks (first ``rowset.KEEP`` of each, exact counts), a 64-bit key per
row for the duplicate check (first ``MAX_KEYED`` rows), the label tally and the files that could
not be read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nanguard.audit.labels import LabelTally
from nanguard.audit.rowset import RowSet
from nanguard.audit.stats import Moments, Reservoir, Scratch

MAX_KEYED = 4_000_000  # rows keyed for the duplicate check (key + row: 64 MB at most)
KEY_BATCH = 1 << 20  # bytes of key columns gathered before they are hashed together
SAMPLE_VALUES = 1_000_000  # values kept in the sample: k = 4096 rows, fewer (>= 64) if wide


@dataclass(frozen=True)
class Settings:
    """How a shard is scanned; the same for every shard of one audit."""

    num_classes: int | None = None
    blank_check: bool = False  # samples are images: flag the blank (constant) ones
    # Duplicate keys: exact over every value (``None``), or over these columns only, the rows
    # with equal keys then compared in full (for wide rows of sources with random access).
    key_columns: tuple[int, ...] | None = None


class Partial:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.rows = 0
        self.width: int | None = None
        self.moments: Moments | None = None
        self.sample: Reservoir | None = None
        self.nonfinite = RowSet()
        self.cells: list[np.ndarray] = []  # (row, feature) pairs of non-finite values
        self._cells_kept = 0
        self.blank = RowSet()
        self.keys: list[np.ndarray] = []
        self.key_rows: list[np.ndarray] = []
        self.keyed = 0
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []  # key columns, rows: unhashed
        self._pending_axis = 0
        self._pending_bytes = 0
        self.labels: LabelTally | None = None
        self.corrupt: list[tuple[str, str]] = []  # (file, why it could not be read)
        self.scratch = Scratch()
        self._planned: tuple[int, int] | None = None

    def plan(self, start: int, stop: int) -> None:
        """Rows ``start .. stop - 1``, all of them, will be added: the sample can be chosen
        before the scan (see :meth:`Reservoir.plan`)."""
        self._planned = (start, stop)

    def start(self, width: int, rows: bool = True) -> None:
        """Size the per-feature state; ``rows=False`` (image folders) keeps no per-row sample."""
        self.width = width
        self.moments = Moments(width)
        if rows:
            k = int(np.clip(SAMPLE_VALUES // max(width, 1), 64, 4096))
            self.sample = Reservoir(width, k)
            if self._planned is not None:
                self.sample.plan(*self._planned)

    def add(self, x: np.ndarray, y: np.ndarray | None, start: int, axis: int = 0) -> None:
        """One chunk: ``x`` of shape (rows, features), ``y`` its labels, ``start`` its first row.
        ``axis=1``: ``x`` has shape (features, rows), each feature contiguous; for few features
        (tables) every per-feature pass is then a long vector loop instead of a short row loop.
        """
        n = x.shape[axis]
        width = x.shape[1 - axis]
        if n == 0:
            return
        if self.moments is None:
            self.start(width)
        elif width != self.width:
            raise ValueError(f"rows have {width} features here, {self.width} before")
        assert self.moments is not None and self.sample is not None
        finite = self.moments.update(x, axis)
        self.sample.update(x, start, axis)
        clean = None
        if finite is not None:
            row_ok = finite.all(1 - axis)
            self.nonfinite.add(np.flatnonzero(~row_ok) + start)
            self._add_cells(finite, start, axis)
            clean = np.flatnonzero(row_ok)
        if self.settings.blank_check and width > 1:
            self.blank.add(_blank_rows(x, clean, axis) + start)
        self._add_keys(x, clean, start, axis)
        if y is not None:
            self.add_labels(y, start)
        self.rows = max(self.rows, start + n)

    def add_labels(self, y: np.ndarray, start: int) -> None:
        if self.labels is None:
            self.labels = LabelTally(self.settings.num_classes)
        self.labels.update(y, start)

    def add_keys(self, keys: np.ndarray, rows: np.ndarray) -> None:
        room = MAX_KEYED - self.keyed
        if room > 0 and len(keys):
            self.keys.append(keys[:room])
            self.key_rows.append(rows[:room])
            self.keyed += min(room, len(keys))

    def _add_keys(self, x: np.ndarray, clean: np.ndarray | None, start: int, axis: int) -> None:
        if self.keyed >= MAX_KEYED:
            return
        rows = (np.arange(x.shape[axis]) if clean is None else clean) + start
        columns = self.settings.key_columns
        if columns is None:  # every value: hash the chunk now, in place
            self._hash_pending()  # keys stay in row order
            values = x if clean is None else np.take(x, clean, axis=axis)
            self.add_keys(exact_keys(values, axis, self.scratch), rows)
            return
        values = np.take(x, columns, axis=1 - axis)
        if clean is not None:
            values = np.take(values, clean, axis=axis)
        self._pending.append((values, rows))
        self._pending_axis = axis
        self._pending_bytes += values.nbytes
        if self._pending_bytes >= KEY_BATCH:
            self._hash_pending()

    def finish(self) -> None:
        """Complete what is gathered in batches: the key columns not hashed yet and a planned
        sample. Called at the end of a scan and by :meth:`merge`, before either is read."""
        self._hash_pending()
        if self.sample is not None:
            self.sample.finish()

    def _hash_pending(self) -> None:
        """Hash the key columns gathered from the last chunks: the few columns of a chunk are
        too small an array for a dozen NumPy calls each, so several chunks go at once."""
        if not self._pending:
            return
        axis = self._pending_axis
        values = np.concatenate([v for v, _ in self._pending], axis=axis)
        rows = np.concatenate([r for _, r in self._pending])
        self._pending, self._pending_bytes = [], 0
        self.add_keys(exact_keys(values, axis, self.scratch), rows)

    def _add_cells(self, finite: np.ndarray, start: int, axis: int) -> None:
        if self._cells_kept >= 100_000:
            return
        rows, cols = np.nonzero(~finite)
        if axis == 1:
            rows, cols = cols, rows
            order = np.lexsort((cols, rows))  # row by row, as in the (rows, features) layout
            rows, cols = rows[order], cols[order]
        self.cells.append(np.stack([rows + start, cols], 1)[: 100_000 - self._cells_kept])
        self._cells_kept += len(self.cells[-1])

    def __getstate__(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if k != "scratch"}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self.scratch = Scratch()

    def merge(self, other: Partial) -> None:
        """Add a later shard (rows already numbered globally)."""
        self.finish()
        other.finish()
        if other.moments is not None:
            if self.moments is None:
                self.width, self.moments, self.sample = other.width, other.moments, other.sample
            else:
                if other.width != self.width:
                    raise ValueError(f"rows have {other.width} features here, {self.width} before")
                self.moments.merge(other.moments)
                if self.sample is not None and other.sample is not None:
                    self.sample.merge(other.sample)
        self.rows = max(self.rows, other.rows)
        self.nonfinite.merge(other.nonfinite)
        self.blank.merge(other.blank)
        for cells in other.cells:
            if self._cells_kept < 100_000:
                self.cells.append(cells[: 100_000 - self._cells_kept])
                self._cells_kept += len(self.cells[-1])
        for keys, rows in zip(other.keys, other.key_rows, strict=True):
            self.add_keys(keys, rows)
        if other.labels is not None:
            if self.labels is None:
                self.labels = other.labels
            else:
                self.labels.merge(other.labels)
        self.corrupt.extend(other.corrupt)


def _blank_rows(x: np.ndarray, clean: np.ndarray | None, axis: int = 0) -> np.ndarray:
    """Positions of the rows among ``clean`` (all rows if None) whose values are all equal.

    A strided subset of the features screens the rows first, so the full comparison runs only
    on the few candidates.
    """
    if axis == 1:
        x = x.T
    if clean is not None:
        x = x[clean]
    step = max(1, x.shape[1] // 64)
    screen = (x[:, ::step] == x[:, :1]).all(1)
    candidates = np.flatnonzero(screen)
    if len(candidates):
        sub = x[candidates]
        candidates = candidates[(sub == sub[:, :1]).all(1)]
    return candidates if clean is None else clean[candidates]


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer, elementwise on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return h ^ (h >> np.uint64(31))


_ODD: dict[int, np.ndarray] = {}


def exact_keys(x: np.ndarray, axis: int = 0, scratch: Scratch | None = None) -> np.ndarray:
    """A 64-bit key per row from its exact bytes: each 64-bit word's bits times an odd constant
    of its column, folded (a bijection per word), summed over the row and mixed: distinct rows
    share a key only through a 64-bit hash collision. A word is one float64, or two adjacent
    float32 of a row (half the work of widening each). ``axis=1``: ``x`` has shape (features,
    rows), its keys are those of the transposed rows, one float32 a word. ``scratch`` holds the
    64-bit work arrays between chunks."""
    x = np.ascontiguousarray(x)
    if x.dtype.itemsize == 8:
        bits = x.view(np.uint64)
    elif axis == 0 and x.shape[1] % 2 == 0:
        bits = x.view(np.uint64)  # two float32 of a row in each word
    else:
        bits = x.view(np.uint32)
    width = bits.shape[1 - axis]
    if width not in _ODD:
        odd = np.random.default_rng(11).integers(0, 2**63, width, dtype=np.uint64)
        _ODD[width] = odd * np.uint64(2) + np.uint64(1)
    odd = _ODD[width] if axis == 0 else _ODD[width][:, None]
    scratch = scratch or Scratch()
    h = scratch.get("keys", bits.shape, np.uint64)
    folded = scratch.get("folded", bits.shape, np.uint64)
    np.multiply(bits, odd, out=h)
    np.right_shift(h, np.uint64(29), out=folded)
    h ^= folded
    return _mix(h.sum(1 - axis, dtype=np.uint64))
