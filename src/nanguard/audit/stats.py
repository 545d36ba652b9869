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
            shift = np.where(self.count > 0, self.mean, 0.0)
            if not (np.abs(shift) > CONDITION * self.std()).any():
                shift = np.zeros_like(shift)  # sums of x itself lose nothing: skip a pass
        else:
            shift = _first_finite(x[0] if axis == 0 else x[:, 0])
        if shift.any():
            shift = shift.astype(x.dtype) if axis == 0 else shift.astype(x.dtype)[:, None]
            d = np.subtract(x, shift, out=self._scratch(x))
        else:
            d = x
        total = d.sum(axis)
        if np.isfinite(total).all():
            finite = None
            counts = np.full(self.width, n, np.int64)
            low, high = x.min(axis), x.max(axis)
        else:
            finite = np.isfinite(x)
            counts = finite.sum(axis)
            self.nonfinite += n - counts
            d = np.where(finite, d, 0)
            total = d.sum(axis)
            low = np.where(finite, x, np.inf).min(axis)
            high = np.where(finite, x, -np.inf).max(axis)
            if finite.all():
                finite = None  # the sum overflowed, the values are finite
        squares = np.einsum("ij,ij->j" if axis == 0 else "ij,ij->i", d, d, dtype=d.dtype)
        total, squares = total.astype(np.float64), squares.astype(np.float64)
        shift = np.ravel(shift).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            c_mean = shift + np.where(counts > 0, total / np.maximum(counts, 1), 0.0)
            c_m2 = np.maximum(squares - total * total / np.maximum(counts, 1), 0.0)
        self._combine(counts, c_mean, c_m2, low.astype(np.float64), high.astype(np.float64))
        return finite

    def _scratch(self, x: np.ndarray) -> np.ndarray:
        """A reused buffer for the shifted chunk: a fresh multi-MB array per chunk would cost
        its page faults every time."""
        buffer = self.__dict__.get("_buffer")
        if buffer is None or buffer.dtype != x.dtype or buffer.size < x.size:
            buffer = self.__dict__["_buffer"] = np.empty(x.size, x.dtype)
        return buffer[: x.size].reshape(x.shape)

    def __getstate__(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if k != "_buffer"}

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

    def merge(self, other: Moments) -> None:
        self.nonfinite += other.nonfinite
        self._combine(other.count, other.mean, other.m2, other.minimum, other.maximum)

    def _combine(
        self, n_b: np.ndarray, mean_b: np.ndarray, m2_b: np.ndarray, low: np.ndarray,
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

    def update(self, x: np.ndarray, start: int) -> None:
        keys = row_keys(start, len(x))
        if len(self.keys) >= self.k:
            wanted = np.flatnonzero(keys < self.keys.max())
        else:
            wanted = np.arange(len(x))
        if len(wanted):
            self._add(keys[wanted], wanted + start, x[wanted])

    def _add(self, keys: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
        """Keep the k smallest keys; only newcomers' values are copied, into evicted slots."""
        room = self.k - len(self.keys)
        if room > 0:
            take = np.argsort(keys)[:room]
            self.keys = np.concatenate([self.keys, keys[take]])
            self.rows = np.concatenate([self.rows, rows[take]])
            self.values = np.concatenate([self.values, values[take].astype(np.float64)])
            rest = np.ones(len(keys), bool)
            rest[take] = False
            keys, rows, values = keys[rest], rows[rest], values[rest]
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

    def merge(self, other: Reservoir) -> None:
        self._add(other.keys, other.rows, other.values)

    def sample(self) -> np.ndarray:
        """The sampled rows in data order, non-finite values as NaN."""
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
