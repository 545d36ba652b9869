"""Row indices found by a check: an exact count, and the first rows kept (bounded memory)."""

from __future__ import annotations

import numpy as np

KEEP = 10_000  # rows kept per check; the count stays exact beyond it


class RowSet:
    def __init__(self) -> None:
        self.count = 0
        self._parts: list[np.ndarray] = []
        self._kept = 0

    def add(self, rows: np.ndarray) -> None:
        if not len(rows):
            return
        self.count += len(rows)
        room = KEEP - self._kept
        if room > 0:
            part = np.asarray(rows[:room], np.int64)
            self._parts.append(part)
            self._kept += len(part)

    def merge(self, other: RowSet) -> None:
        kept = other.rows()
        self.add(kept)
        self.count += other.count - len(kept)

    def rows(self) -> np.ndarray:
        """The kept rows, in ascending order."""
        if not self._parts:
            return np.empty(0, np.int64)
        return np.sort(np.concatenate(self._parts))
