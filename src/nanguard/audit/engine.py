"""Scan the shards of a source: in this process, in a local process pool, or on Dask.

Partials are merged in shard order, so the result is the same whichever way ran them.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from nanguard.audit.command import ENGINES
from nanguard.audit.partial import Partial, Settings
from nanguard.audit.rowset import RowSet
from nanguard.audit.source import AuditInputError, ChunkedShard, Shard, Source


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def scan_shard(shard: Shard, settings: Settings, offset: int) -> Partial:
    """Top-level, so that worker processes and Dask can call it."""
    return shard.scan(settings, offset)


class Engine:
    """Where shards are scanned: ``local`` (``workers`` processes; 1 = this process) or
    ``dask`` (a ``dask.distributed`` scheduler at ``scheduler``, or a local cluster without
    one; the workers must see the same file paths)."""

    def __init__(
        self, kind: str = "local", workers: int | None = None, scheduler: str | None = None
    ) -> None:
        if kind not in ENGINES:
            raise AuditInputError(f"--engine must be one of {', '.join(ENGINES)}; got {kind!r}")
        if workers is not None and workers < 1:
            raise AuditInputError(f"--workers must be at least 1; got {workers}")
        if scheduler is not None and kind != "dask":
            raise AuditInputError("--scheduler goes with --engine dask")
        self.kind = kind
        self.workers = workers or default_workers()
        self.scheduler = scheduler
        self._client: Any = None
        self._pool: ProcessPoolExecutor | None = None
        self._offsets: dict[int, int] = {}  # first row of each serially scanned shard

    def __enter__(self) -> Engine:
        if self.kind == "dask":
            try:
                from dask.distributed import Client
            except ImportError as exc:
                raise AuditInputError(
                    "--engine dask needs dask.distributed, which is not installed "
                    "(pip install 'dask[distributed]')"
                ) from exc
            try:
                self._client = (
                    Client(self.scheduler)
                    if self.scheduler
                    else Client(
                        processes=True,
                        n_workers=self.workers,
                        threads_per_worker=1,
                        dashboard_address=None,
                    )
                )
            except Exception as exc:
                raise AuditInputError(
                    f"--scheduler {self.scheduler}: cannot connect ({exc})"
                ) from exc
        return self

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.close()
        if self._pool is not None:
            self._pool.shutdown()

    @property
    def shards_per_source(self) -> int:
        if self._client is not None:
            return max(self.workers, len(self._client.nthreads()))
        return self.workers

    def _parallel(self, source: Source) -> bool:
        shards = source.shards
        return (
            len(shards) > 1
            and all(shard.start is not None for shard in shards)
            and (self._client is not None or self.workers > 1)
        )

    def _map(self, function: Any, shards: list[Shard], *same: object) -> list[Any]:
        """``function(shard, *same)`` for every shard, in worker processes, in shard order."""
        n = len(shards)
        columns = [[value] * n for value in same]
        if self._client is not None:
            return self._client.gather(self._client.map(function, shards, *columns, pure=False))
        if self._pool is None:
            methods = multiprocessing.get_all_start_methods()
            method = "forkserver" if "forkserver" in methods else "spawn"
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context(method)
            )
        return list(self._pool.map(function, shards, *columns))

    def scan(self, source: Source, settings: Settings, offset: int) -> Partial:
        if self._parallel(source):
            return _merge(self._map(scan_shard, source.shards, settings, offset), settings)
        merged = Partial(settings)
        for shard in source.shards:
            start = offset if shard.start is not None else max(offset, merged.rows)
            self._offsets[id(shard)] = start
            merged.merge(shard.scan(settings, start))
        return merged

    def find_rows(
        self,
        source: Source,
        features: np.ndarray,
        low: np.ndarray,
        high: np.ndarray,
        offset: int,
    ) -> dict[int, RowSet]:
        """The second pass for outliers: rows of ``features`` outside ``[low, high]``."""
        shards = [s for s in source.shards if isinstance(s, ChunkedShard)]
        if self._parallel(source):
            parts = self._map(find_in_shard, shards, features, low, high, offset)
        else:  # each shard numbered as in the first pass
            parts = [
                shard.find_rows(features, low, high, self._offsets.get(id(shard), offset))
                for shard in shards
            ]
        found = {int(f): RowSet() for f in features}
        for part in parts:
            for f, rows_set in part.items():
                found[f].merge(rows_set)
        return found


def find_in_shard(
    shard: Shard, features: np.ndarray, low: np.ndarray, high: np.ndarray, offset: int
) -> dict[int, RowSet]:
    assert isinstance(shard, ChunkedShard)
    return shard.find_rows(features, low, high, offset)


def _merge(partials: list[Partial], settings: Settings) -> Partial:
    merged = Partial(settings)
    for partial in partials:
        merged.merge(partial)
    return merged
