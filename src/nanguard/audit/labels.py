"""Streaming tally of labels (or regression targets): what the label checks need, mergeable."""

from __future__ import annotations

import numpy as np

from nanguard.audit.rowset import RowSet

BINCOUNT_LIMIT = 1 << 16  # labels in [0, this): counted with a bincount
MAX_CLASSES = 1000  # more distinct integer values than this: targets, not class labels


class LabelTally:
    """Non-finite, negative, fractional and too-large labels with their rows, and class counts.

    ``num_classes`` (when known before the scan) lets the rows of labels ``>= num_classes`` be
    kept during the one pass. Class counts stop once more than ``MAX_CLASSES`` distinct integer
    values were seen: such labels are regression targets, not classes.
    """

    def __init__(self, num_classes: int | None) -> None:
        self.num_classes = num_classes
        self.count = 0
        self.width = 1
        self.nonfinite = RowSet()
        self.negative = RowSet()
        self.fractional = RowSet()
        self.too_large = RowSet()
        self.classes: dict[int, int] | None = {}

    def update(self, y: np.ndarray, start: int) -> None:
        y = np.asarray(y)
        if y.ndim > 1:
            self.width = max(self.width, int(np.prod(y.shape[1:])))
            y2 = y.reshape(len(y), -1)
            if y2.shape[1] == 1:
                y = y2[:, 0]
            else:  # one-hot or multi-output targets: only non-finite values are checked
                self.count += len(y2)
                if y2.dtype.kind == "f":
                    self.nonfinite.add(np.flatnonzero(~np.isfinite(y2).all(1)) + start)
                self.classes = None
                return
        self.count += len(y)
        if y.dtype.kind not in "biuf":
            raise TypeError(f"labels of type {y.dtype} are not numbers")
        if y.dtype.kind == "f":
            finite = np.isfinite(y)
            if not finite.all():
                self.nonfinite.add(np.flatnonzero(~finite) + start)
                y = np.where(finite, y, 0)
            integral = y == np.floor(y)  # the same test as round(y), a faster kernel
            if not integral.all():
                self.fractional.add(np.flatnonzero(~integral & finite) + start)
            whole = y[finite & integral].astype(np.int64)
        else:
            whole = y.astype(np.int64)
            finite = None
        self.negative.add(np.flatnonzero(y < 0) + start)
        if self.num_classes is not None:
            self.too_large.add(np.flatnonzero(y >= self.num_classes) + start)
        if self.classes is not None:
            if len(whole) and 0 <= whole.min() and whole.max() < BINCOUNT_LIMIT:
                counts = np.bincount(whole)  # class labels: counting beats np.unique's sort
                values = np.flatnonzero(counts)
                counts = counts[values]
            else:
                values, counts = np.unique(whole, return_counts=True)
            for value, count in zip(values.tolist(), counts.tolist(), strict=True):
                self.classes[value] = self.classes.get(value, 0) + count
            if len(self.classes) > MAX_CLASSES:
                self.classes = None

    def merge(self, other: LabelTally) -> None:
        self.count += other.count
        self.width = max(self.width, other.width)
        for name in ("nonfinite", "negative", "fractional", "too_large"):
            getattr(self, name).merge(getattr(other, name))
        if self.classes is None or other.classes is None:
            self.classes = None
        else:
            for value, count in other.classes.items():
                self.classes[value] = self.classes.get(value, 0) + count
            if len(self.classes) > MAX_CLASSES:
                self.classes = None
