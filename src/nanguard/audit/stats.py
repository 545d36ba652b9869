"""Mergeable per-feature statistics: one pass over chunks, exact merge across shards.

Every structure here has ``update`` (one chunk of rows) and ``merge`` (another partial), so a
file can be cut into shards, scanned by separate processes or Dask workers, and combined into
the same result as one pass: counts, min and max merge trivially, mean and variance with the
parallel formula of Chan, Golub and LeVeque (1979), the bottom-k sample by keeping the k smallest
keys of both.
"""

from __future__ import annotations

import numpy as np


def as_float(x: np.ndarray) -> np.ndarray:
    """Numbers the statistics can run on: float32 stays, small integers become exact float32."""
    if x.dtype == np.float32 or x.dtype == np.float64:
        return x
    if (x.dtype.kind in "biu" and x.dtype.itemsize <= 2) or x.dtype == np.float16:
        return x.astype(np.float32)
    return x.astype(np.float64)


CONDITION = 3.0
PLAN_BLOCK = 1 << 18  # row keys computed at once when a sample is chosen ahead of the scan


class Scratch:
    """Reused work buffers, one per name. A fresh multi-MB temporary per chunk would cost its
    page faults every time (the allocator hands large blocks back to the kernel on free)."""

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
        size = int(np.prod(shape))
        buffer = self._buffers.get(name)
        if buffer is None or buffer.dtype != dtype or buffer.size < size:
            buffer = self._buffers[name] = np.empty(size, dtype)
        return buffer[:size].reshape(shape)


class Moments:
    """Per-feature count, non-finite count, min, max, mean and M2 (sum of squared deviations).

    ``update`` costs four in-cache passes over a chunk: the column sum (a NaN or Inf anywhere
    makes its column's sum non-finite, so the all-finite case needs no ``isfinite`` pass), min,
    max and the sum of squares. Where a feature's mean is large against its std (more than
    ``CONDITION`` times), the sums are taken over the chunk minus the running mean (one more
    pass), so float32 accumulation inside a chunk loses no precision to the mean.
    """

    def __init__(self, width: int) -> None:
        self.count = np.zeros(width, np.int64)
        self.nonfinite = np.zeros(width, np.int64)
        self.minimum = np.full(width, np.inf)
        self.maximum = np.full(width, -np.inf)
        self.mean = np.zeros(width)
        self.m2 = np.zeros(width)
        self._scratch = Scratch()

    @property
    def width(self) -> int:
        return len(self.count)

    def std(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt(np.where(self.count > 0, self.m2 / np.maximum(self.count, 1), np.nan))

    def update(self, x: np.ndarray, axis: int = 0) -> np.ndarray | None:
        """Add a chunk of shape (rows, features); ``axis=1``: of shape (features, rows), the
        fast layout when there are few features and many values (pixels of a channel).
        Returns where the chunk is finite, or None when all of it is (the common case)."""
        n = x.shape[axis]
        if self.count.any():
            # |mean| > CONDITION * std, with std = sqrt(m2 / count); where count is 0 the mean
            # and m2 are 0, so the test is false there, as it should be.
            spread = CONDITION * np.sqrt(self.m2 / np.maximum(self.count, 1))
            shift = self.mean if (np.abs(self.mean) > spread).any() else None
        else:
            shift = _first_finite(x[0] if axis == 0 else x[:, 0])
        if shift is not None and shift.any():
            shift = shift.astype(x.dtype)  # the shift the sums are taken from, exactly
            out = self._scratch.get("shifted", x.shape, x.dtype)
            d = np.subtract(x, shift if axis == 0 else shift[:, None], out=out)
            base = shift.astype(np.float64)
        else:
            d, base = x, np.zeros(self.width)  # sums of x itself lose nothing: skip a pass
        total = d.sum(axis)
        if np.isfinite(total).all():
            low, high = x.min(axis), x.max(axis)
            squares = np.einsum("ij,ij->j" if axis == 0 else "ij,ij->i", d, d, dtype=d.dtype)
            self._add_finite(
                n, total.astype(np.float64), squares.astype(np.float64), base, low, high
            )
            return None
        finite = np.isfinite(x)
        counts = finite.sum(axis)
        self.nonfinite += n - counts
        d = np.where(finite, d, 0)
        total = d.sum(axis)
        low = np.where(finite, x, np.inf).min(axis)
        high = np.where(finite, x, -np.inf).max(axis)
        squares = np.einsum("ij,ij->j" if axis == 0 else "ij,ij->i", d, d, dtype=d.dtype)
        total, squares = total.astype(np.float64), squares.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            c_mean = base + np.where(counts > 0, total / np.maximum(counts, 1), 0.0)
            c_m2 = np.maximum(squares - total * total / np.maximum(counts, 1), 0.0)
        self._combine(counts, c_mean, c_m2, low.astype(np.float64), high.astype(np.float64))
        return None if finite.all() else finite  # all finite: the sum overflowed

    def _add_finite(
        self,
        n: int,
        total: np.ndarray,
        squares: np.ndarray,
        base: np.ndarray,
        low: np.ndarray,
        high: np.ndarray,
    ) -> None:
        """:meth:`_combine` for a chunk of ``n`` finite rows (sums taken around ``base``):
        the same arithmetic in the same order, without the guards for empty features, in
        about half the small NumPy calls."""
        c_mean = base + total / n
        c_m2 = np.maximum(squares - total * total / n, 0.0)
        n_a = self.count
        self.count = n_a + n
        share = n / self.count
        delta = c_mean - self.mean
        self.mean = self.mean + delta * share
        self.m2 = self.m2 + c_m2 + delta * delta * n_a * share
        self.minimum = np.minimum(self.minimum, low)
        self.maximum = np.maximum(self.maximum, high)

    def __getstate__(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if k != "_scratch"}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._scratch = Scratch()

    def update_counts(self, counts: np.ndarray) -> None:
        """Add values given as counts: ``counts[f, v]`` values equal to ``v`` in feature ``f``
        (8- and 16-bit pixels: a ``bincount`` is cheaper than float passes, and exact)."""
        values = np.arange(counts.shape[1], dtype=np.float64)
        n = counts.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = (counts @ values) / np.maximum(n, 1)
            m2 = (counts * (values[None, :] - mean[:, None]) ** 2).sum(1)
        seen = counts > 0
        low = np.where(n > 0, seen.argmax(1), np.inf)
        high = np.where(n > 0, counts.shape[1] - 1 - seen[:, ::-1].argmax(1), -np.inf)
        self._combine(n.astype(np.int64), mean, m2, low.astype(np.float64), high.astype(np.float64))

    def update_integers(
        self, n: int, totals: list[int], squares: list[int], low: np.ndarray, high: np.ndarray
    ) -> None:
        """Add ``n`` integer values per feature given by their exact sums and sums of squares
        (8-bit pixels: integer passes over the pixels are cheaper than float passes or a
        ``bincount``). Python integers keep the sums exact; each mean and M2 is then one
        correctly rounded division."""
        if not n:
            return
        mean = np.array([t / n for t in totals])
        m2 = np.array([(n * q - t * t) / n for t, q in zip(totals, squares, strict=True)])
        counts = np.full(self.width, n, np.int64)
        self._combine(counts, mean, m2, low.astype(np.float64), high.astype(np.float64))

    def merge(self, other: Moments) -> None:
        self.nonfinite += other.nonfinite
        self._combine(other.count, other.mean, other.m2, other.minimum, other.maximum)

    def _combine(
        self,
        n_b: np.ndarray,
        mean_b: np.ndarray,
        m2_b: np.ndarray,
        low: np.ndarray,
        high: np.ndarray,
    ) -> None:
        n_a = self.count
        n = n_a + n_b
        with np.errstate(invalid="ignore", divide="ignore"):
            delta = mean_b - self.mean
            share = np.where(n > 0, n_b / np.maximum(n, 1), 0.0)
            self.mean = np.where(n_b > 0, self.mean + delta * share, self.mean)
            self.m2 = np.where(n_b > 0, self.m2 + m2_b + delta * delta * n_a * share, self.m2)
        self.count = n
        self.minimum = np.minimum(self.minimum, low)
        self.maximum = np.maximum(self.maximum, high)

    def grouped(self, groups: np.ndarray, size: int) -> Moments:
        """The same statistics over groups of features (e.g. channels): exact, by Chan again."""
        out = Moments(size)
        out.count = np.bincount(groups, self.count, size).astype(np.int64)
        out.nonfinite = np.bincount(groups, self.nonfinite, size).astype(np.int64)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.mean = np.bincount(groups, self.count * self.mean, size) / np.maximum(out.count, 1)
            spread = self.count * (self.mean - out.mean[groups]) ** 2
            out.m2 = np.bincount(groups, self.m2 + spread, size)
        out.minimum = np.full(size, np.inf)
        out.maximum = np.full(size, -np.inf)
        np.minimum.at(out.minimum, groups, self.minimum)
        np.maximum.at(out.maximum, groups, self.maximum)
        return out


def _first_finite(first: np.ndarray) -> np.ndarray:
    """The first row as a shift, 0 where it is not finite."""
    first = first.astype(np.float64)
    return np.where(np.isfinite(first), first, 0.0)


class Reservoir:
    """A uniform sample of at most ``k`` rows (bottom-k of a random key per row): the sketch.

    Quantiles (median, MAD, the 99th percentile of |x|) and histograms are read from it. A
    quantile estimated from k uniformly sampled rows has a rank error with standard deviation
    sqrt(q(1-q)/k): 0.8 % of the rows at the median for k = 4096, 1.4 % for k = 1275 (the k of
    784-feature rows). Merging keeps the k smallest keys of both, which is again a uniform
    sample of the union; a row's key is a hash of its index, so the sample does not depend on
    how the data was sharded.
    """

    def __init__(self, width: int, k: int) -> None:
        self.k = k
        self.keys = np.empty(0)
        self.rows = np.empty(0, np.int64)
        self.values = np.empty((0, width))
        self._bound = 1.0  # the largest key held once full: a row with a larger key is skipped
        self._plan: tuple[np.ndarray, np.ndarray] | None = None  # rows to take, their keys
        self._taken: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # planned, not added

    def plan(self, start: int, stop: int) -> None:
        """Rows ``start .. stop - 1`` will all be offered: pick the ``k`` with the smallest keys
        now (the keys depend on the row index only), so that :meth:`update` copies those rows
        and nothing else, instead of taking in and evicting about ``k * ln(rows / k)`` rows
        on the way. The sample is the same."""
        keys = np.empty(0)
        rows = np.empty(0, np.int64)
        for first in range(start, stop, PLAN_BLOCK):
            block = row_keys(first, min(PLAN_BLOCK, stop - first))
            best = np.arange(len(block))
            if len(block) > self.k:
                best = np.argpartition(block, self.k - 1)[: self.k]
            keys = np.concatenate([keys, block[best]])
            rows = np.concatenate([rows, best + first])
            if len(keys) > self.k:
                keep = np.argpartition(keys, self.k - 1)[: self.k]
                keys, rows = keys[keep], rows[keep]
        order = np.argsort(rows)
        self._plan = (rows[order], keys[order])

    def update(self, x: np.ndarray, start: int, axis: int = 0) -> None:
        """Offer the rows of a chunk; ``axis=1``: the chunk has shape (features, rows)."""
        n = x.shape[axis]
        if self._plan is not None:
            rows, keys = self._plan
            low, high = np.searchsorted(rows, (start, start + n))
            if high > low:
                wanted = rows[low:high] - start
                values = x[wanted] if axis == 0 else x[:, wanted].T
                self._taken.append((keys[low:high], rows[low:high], values.astype(np.float64)))
            return
        keys = row_keys(start, n)
        if len(self.keys) >= self.k:
            wanted = np.flatnonzero(keys < self._bound)
        else:
            wanted = np.arange(n)
        if len(wanted):
            values = x[wanted] if axis == 0 else x[:, wanted].T
            self._add(keys[wanted], wanted + start, values)

    def finish(self) -> None:
        """Take in the planned rows gathered by :meth:`update` (once: a growing array
        concatenated at every chunk would copy the sample over and over)."""
        if self._taken:
            parts, self._taken = self._taken, []
            self._add(*(np.concatenate(part) for part in zip(*parts, strict=True)))

    def _add(self, keys: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
        """Keep the k smallest keys; only newcomers' values are copied, into evicted slots."""
        room = self.k - len(self.keys)
        if room > 0:
            # the room smallest keys, in any order (an argpartition, not a sort)
            take = (
                np.argpartition(keys, room - 1)[:room] if room < len(keys) else np.arange(len(keys))
            )
            self.keys = np.concatenate([self.keys, keys[take]])
            self.rows = np.concatenate([self.rows, rows[take]])
            self.values = np.concatenate([self.values, values[take].astype(np.float64)])
            rest = np.ones(len(keys), bool)
            rest[take] = False
            keys, rows, values = keys[rest], rows[rest], values[rest]
            if len(self.keys) >= self.k:
                self._bound = self.keys.max()
        if not len(keys):
            return
        held = len(self.keys)
        keep = np.argpartition(np.concatenate([self.keys, keys]), self.k - 1)[: self.k]
        newcomers = keep[keep >= held] - held
        evicted = np.ones(held, bool)
        evicted[keep[keep < held]] = False
        slots = np.flatnonzero(evicted)
        self.keys[slots] = keys[newcomers]
        self.rows[slots] = rows[newcomers]
        self.values[slots] = values[newcomers]
        self._bound = self.keys.max()

    def merge(self, other: Reservoir) -> None:
        self.finish()
        other.finish()
        self._add(other.keys, other.rows, other.values)

    def sample(self) -> np.ndarray:
        """The sampled rows in data order, non-finite values as NaN."""
        self.finish()
        values = self.values[np.argsort(self.rows)]
        return np.where(np.isfinite(values), values, np.nan)


def row_keys(start: int, n: int) -> np.ndarray:
    """Uniform pseudo-random keys in [0, 1) for rows ``start .. start + n - 1``: splitmix64 of
    the row index, so every shard and every worker gives a row the same key."""
    with np.errstate(over="ignore"):
        h = np.arange(start, start + n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53
