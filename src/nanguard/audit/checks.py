"""Turn merged partial statistics into the findings of CONTRACT §4.

Each check is a function of the merged :class:`~nanguard.audit.partial.Partial`, so it does not
matter how the data was read or sharded. ``indices`` hold rows (or, for ``corrupt_file``, paths);
``count`` is the exact number of rows (files; for feature-level findings, features or classes).
Rules and thresholds:

- ``nonfinite`` (error): NaN, Inf or a missing cell in a feature.
- ``constant_feature`` (warning): std 0 over the finite values, the 0/0 of ``(x - mean) / std``.
- ``outlier`` (warning): robust z = |x - median| / (1.4826 MAD) above 10, and more than 5 std
  from the mean; median and MAD come from the sample. Only features whose exact min or max pass
  these bounds are searched for their rows, in a second pass over the data (none on clean
  data). A feature whose MAD is 0 (mostly one value) is skipped: its rare other values are not
  outliers.
- ``unscaled`` (warning; info for image files, which loaders usually rescale): the sample's 99th
  percentile of |x| above 20 (0..255 pixels, raw prices) or below 1e-3 but not zero.
- ``label_nonfinite`` (error); ``label_out_of_range``: labels outside ``[0, num_classes)`` or
  fractional (error when the number of classes is known, warning when only the integer labels
  suggest classes); ``class_imbalance`` (warning): a class with no sample, or a largest/smallest
  class ratio of 10 or more.
- ``blank_sample`` (warning): an image (or image-like sample) whose values are all equal.
- ``duplicate`` (info): rows equal byte for byte to an earlier row.
- ``corrupt_file`` (error): a file, or part of one, that could not be read.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from nanguard.audit.partial import MAX_KEYED, Partial
from nanguard.audit.report import FeatureSummary, Finding, Histogram
from nanguard.audit.rowset import RowSet
from nanguard.audit.source import Source

LISTED = 1000  # rows listed in a finding; its count is exact
PER_FEATURE = 10  # more features than this with the same problem: one finding for all
OUTLIER_Z = 10.0
OUTLIER_STD = 5.0
UNSCALED_HIGH = 20.0
UNSCALED_LOW = 1e-3
IMBALANCE = 10.0
MAX_FEATURES = 4096  # wider samples are summarized per channel in the report's feature list


class Robust:
    """Median, MAD (scaled to a std) and 99th percentile of |x| per feature, from the sample;
    and the bounds outside which a value is an outlier."""

    def __init__(self, partial: Partial) -> None:
        assert partial.sample is not None and partial.moments is not None
        self.sample = partial.sample.sample()
        columns = self.sample.T.copy()  # each feature's values contiguous, in a copy
        holes = np.isnan(columns).any(1)  # the same in x, |x - median| and |x|
        self.median = _per_column(_median, np.nanmedian, columns.copy(), holes)
        spread = np.abs(columns - self.median[:, None])
        self.mad = _per_column(_median, np.nanmedian, spread, holes) * 1.4826
        self.peak = _per_column(
            lambda a: np.percentile(a, 99, axis=1, overwrite_input=True),
            lambda a, **kw: np.nanpercentile(a, 99, **kw),
            np.abs(columns, out=columns),
            holes,
        )
        m = partial.moments
        std = m.std()
        self.high = np.maximum(self.median + OUTLIER_Z * self.mad, m.mean + OUTLIER_STD * std)
        self.low = np.minimum(self.median - OUTLIER_Z * self.mad, m.mean - OUTLIER_STD * std)
        usable = (self.mad > 0) & np.isfinite(self.mad)
        self.features = np.flatnonzero(usable & ((m.maximum > self.high) | (m.minimum < self.low)))


class Checker:
    def __init__(
        self,
        partial: Partial,
        source: Source,
        num_classes: int | None,
        robust: Robust | None = None,
        outlier_rows: dict[int, RowSet] | None = None,
    ) -> None:
        self.p = partial
        self.source = source
        self.num_classes = num_classes if num_classes is not None else source.num_classes
        self.findings: list[Finding] = []
        self.robust = robust
        self.sample = robust.sample if robust is not None else None
        self.outlier_rows = outlier_rows or {}

    # -- naming --

    def name(self, feature: int) -> int | str:
        names = self.source.feature_names
        return names[feature] if names is not None and feature < len(names) else feature

    def _names(self, features: np.ndarray, limit: int = 8) -> str:
        shown = ", ".join(str(self.name(int(f))) for f in features[:limit])
        return shown + (", ..." if len(features) > limit else "")

    def _rows(self, rows: np.ndarray, limit: int = 5) -> str:
        files = self.source.files
        shown = [
            f"{r} ({files[r]})" if files is not None and r < len(files) else str(r)
            for r in rows[:limit].tolist()
        ]
        return ", ".join(shown) + (", ..." if len(rows) > limit else "")

    def add(
        self,
        code: str,
        severity: str,
        feature: int | str | None,
        indices: np.ndarray | list[str],
        count: int,
        message: str,
    ) -> None:
        listed = (
            [str(i) for i in indices]
            if isinstance(indices, list)
            else [int(i) for i in indices[:LISTED]]
        )
        self.findings.append(Finding(code, severity, feature, listed, int(count), message))

    # -- checks --

    def run(self) -> list[Finding]:
        self.corrupt()
        if self.p.moments is not None:
            self.nonfinite()
            self.constant()
            self.unscaled()
            self.outliers()
        self.labels()
        self.blank()
        self.duplicates()
        order = {"error": 0, "warning": 1, "info": 2}
        return sorted(self.findings, key=lambda f: order[f.severity])

    def corrupt(self) -> None:
        if not self.p.corrupt:
            return
        paths = [path for path, _ in self.p.corrupt]
        why = "; ".join(f"{path}: {reason}" for path, reason in self.p.corrupt[:3])
        more = f" (and {len(paths) - 3} more)" if len(paths) > 3 else ""
        self.add(
            "corrupt_file",
            "error",
            None,
            paths,
            len(paths),
            f"{len(paths)} file(s) could not be read entirely: {why}{more}; remove or re-create "
            "them before training",
        )

    def nonfinite(self) -> None:
        m = self.p.moments
        assert m is not None
        bad = np.flatnonzero(m.nonfinite)
        if not len(bad):
            return
        cells = np.concatenate(self.p.cells) if self.p.cells else np.empty((0, 2), np.int64)
        fix = "drop or repair these rows, and check the preprocessing that made them (0/0, log(0))"
        if len(bad) <= PER_FEATURE and len(cells):
            for f in bad:
                rows = np.unique(cells[cells[:, 1] == f, 0])
                self.add(
                    "nonfinite",
                    "error",
                    self.name(int(f)),
                    rows,
                    int(m.nonfinite[f]),
                    f"{m.nonfinite[f]} non-finite or missing value(s) in feature "
                    f"{self.name(int(f))}: rows {self._rows(rows)}; {fix}",
                )
            return
        rows = self.p.nonfinite.rows()
        worst = bad[np.argsort(-m.nonfinite[bad], kind="stable")]
        self.add(
            "nonfinite",
            "error",
            None,
            rows,
            self.p.nonfinite.count,
            f"{self.p.nonfinite.count} row(s) hold non-finite or missing values, in {len(bad)} "
            f"features (most in {self._names(worst, 5)}): rows {self._rows(rows)}; {fix}",
        )

    def constant(self) -> None:
        m = self.p.moments
        assert m is not None
        flat = np.flatnonzero((m.count > 1) & (m.m2 == 0))
        if not len(flat):
            return
        why = (
            "standardizing divides by a zero std (0/0 = NaN); drop such features or add an "
            "epsilon to the std"
        )
        if len(flat) <= PER_FEATURE:
            for f in flat:
                self.add(
                    "constant_feature",
                    "warning",
                    self.name(int(f)),
                    [],
                    1,
                    f"feature {self.name(int(f))} is constant ({m.minimum[f]:.6g}); {why}",
                )
            return
        self.add(
            "constant_feature",
            "warning",
            None,
            [],
            len(flat),
            f"{len(flat)} of {m.width} features are constant ({self._names(flat)}); {why}",
        )

    def unscaled(self) -> None:
        m = self.p.moments
        assert m is not None
        if self.robust is not None and len(self.robust.sample):
            peak = self.robust.peak
        elif self.source.kind == "images":
            peak = np.maximum(np.abs(m.minimum), np.abs(m.maximum))
        else:
            return
        high = np.flatnonzero(peak > UNSCALED_HIGH)
        low = np.flatnonzero((peak < UNSCALED_LOW) & (peak > 0))
        severity = "info" if self.source.kind == "images" else "warning"
        pixels = bool(len(high)) and m.maximum[high].max() <= 255 and m.minimum[high].min() >= 0
        hint = "divide 0..255 pixels by 255" if pixels else "standardize ((x - mean) / std)"
        for features, what in ((high, "large"), (low, "tiny")):
            if not len(features):
                continue
            if len(features) <= PER_FEATURE:
                for f in features:
                    self.add(
                        "unscaled",
                        severity,
                        self.name(int(f)),
                        [],
                        1,
                        f"feature {self.name(int(f))} is far from unit scale ({what}): 99% of |x| "
                        f"up to {peak[f]:.4g}, mean {m.mean[f]:.4g}, std {m.std()[f]:.4g}; "
                        + (hint if what == "large" else "standardize it"),
                    )
            else:
                self.add(
                    "unscaled",
                    severity,
                    None,
                    [],
                    len(features),
                    f"{len(features)} of {m.width} features are far from unit scale ({what}; "
                    f"99% of |x| up to {peak[features].max():.4g}, e.g. "
                    f"{self._names(features)}); " + (hint if what == "large" else "standardize"),
                )

    def outliers(self) -> None:
        m, robust = self.p.moments, self.robust
        if m is None or robust is None or not self.outlier_rows:
            return
        fix = "check these rows (unit mistakes, sentinels like -999 or 1e9) or clip the feature"
        found = {f: rows for f, rows in sorted(self.outlier_rows.items()) if rows.count}
        with np.errstate(all="ignore"):
            far = np.maximum(m.maximum - robust.median, robust.median - m.minimum)
            z = far / robust.mad
        if len(found) <= PER_FEATURE:
            for f, rows in found.items():
                listed = rows.rows()
                self.add(
                    "outlier",
                    "warning",
                    self.name(f),
                    listed,
                    rows.count,
                    f"{rows.count} extreme value(s) in feature {self.name(f)} (median "
                    f"{robust.median[f]:.4g}, robust z up to {z[f]:.3g}): rows "
                    f"{self._rows(listed)}; {fix}",
                )
            return
        listed = np.unique(np.concatenate([rows.rows() for rows in found.values()]))
        features = np.array(sorted(found))
        self.add(
            "outlier",
            "warning",
            None,
            listed,
            len(listed),
            f"{len(listed)} row(s) hold extreme values in {len(found)} features "
            f"({self._names(features)}): rows {self._rows(listed)}; {fix}",
        )

    def labels(self) -> None:
        tally = self.p.labels
        if tally is None:
            return
        label = self.source.label_name or "label"
        nc = self.num_classes
        if tally.nonfinite.count:
            rows = tally.nonfinite.rows()
            self.add(
                "label_nonfinite",
                "error",
                label,
                rows,
                tally.nonfinite.count,
                f"{tally.nonfinite.count} non-finite or missing label(s): rows {self._rows(rows)};"
                " the loss of these rows is NaN; drop or fix them",
            )
        if tally.width > 1:
            return
        classes = tally.classes
        looks_like_classes = classes is not None and tally.fractional.count <= 0.01 * max(
            tally.count, 1
        )
        if nc is None and not looks_like_classes:
            return
        severity = "error" if nc is not None else "warning"
        bound = f"[0, {nc})" if nc is not None else "[0, number of classes)"
        for rows_set, what in (
            (tally.negative, "negative label(s)"),
            (tally.too_large, f"label(s) >= {nc}"),
            (tally.fractional, "fractional label(s)"),
        ):
            if not rows_set.count:
                continue
            rows = rows_set.rows()
            self.add(
                "label_out_of_range",
                severity,
                label,
                rows,
                rows_set.count,
                f"{rows_set.count} {what}, outside the classes {bound}: rows "
                f"{self._rows(rows)}; sparse cross-entropy gives NaN (GPU) or an error (CPU) "
                "on them",
            )
        if classes:
            self.balance(classes, nc, label)

    def balance(self, classes: dict[int, int], nc: int | None, label: str) -> None:
        names = self.source.class_names

        def named(c: int) -> str:
            return f"{c} ({names[c]})" if names is not None and 0 <= c < len(names) else str(c)

        valid = {c: n for c, n in classes.items() if c >= 0 and (nc is None or c < nc)}
        if nc is not None:
            missing = [c for c in range(nc) if c not in valid]
            if missing:
                shown = ", ".join(named(c) for c in missing[:10])
                self.add(
                    "class_imbalance",
                    "warning",
                    label,
                    [],
                    len(missing),
                    f"{len(missing)} of {nc} classes have no sample: {shown}",
                )
        if len(valid) > 1:
            big = max(valid, key=lambda c: valid[c])
            small = min(valid, key=lambda c: valid[c])
            if valid[big] >= IMBALANCE * valid[small]:
                self.add(
                    "class_imbalance",
                    "warning",
                    label,
                    [],
                    len(valid),
                    f"class {named(big)} has {valid[big]} samples, class {named(small)} only "
                    f"{valid[small]} ({valid[big] / valid[small]:.0f}x); weight the classes "
                    "(class_weight=) or resample",
                )

    def blank(self) -> None:
        if not self.p.blank.count:
            return
        rows = self.p.blank.rows()
        what = "image(s)" if self.source.image_like else "sample(s)"
        self.add(
            "blank_sample",
            "warning",
            None,
            rows,
            self.p.blank.count,
            f"{self.p.blank.count} blank {what} (every value equal): rows {self._rows(rows)}",
        )

    def duplicates(self) -> None:
        if not self.p.keys:
            return
        keys = np.concatenate(self.p.keys)
        ordered = np.sort(keys)  # a vectorized sort, far cheaper than the stable argsort below
        if not (ordered[1:] == ordered[:-1]).any():
            return  # no two keys equal: no duplicate (the common case)
        rows = np.concatenate(self.p.key_rows)
        order = np.argsort(keys, kind="stable")  # rows ascend within equal keys
        keys, rows = keys[order], rows[order]
        same = keys[1:] == keys[:-1]
        if not same.any():
            return
        repeats = rows[1:][same]
        firsts = rows[:-1][same]
        if self.p.settings.key_columns is not None and self.source.rows_of is not None:
            repeats, firsts = self._verify(repeats, firsts)
        if not len(repeats):
            return
        order = np.argsort(repeats)
        repeats, firsts = repeats[order], firsts[order]
        checked = f" (among the first {MAX_KEYED} rows)" if self.p.keyed >= MAX_KEYED else ""
        self.add(
            "duplicate",
            "info",
            None,
            repeats,
            len(repeats),
            f"{len(repeats)} row(s) repeat an earlier row exactly{checked}, e.g. row "
            f"{self._rows(repeats[:1])} = row {self._rows(firsts[:1])}",
        )

    def _verify(self, repeats: np.ndarray, firsts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keep the pairs whose rows are equal (keys over some columns only can collide)."""
        rows_of = self.source.rows_of
        assert rows_of is not None
        repeats, firsts = repeats[:100_000], firsts[:100_000]
        wanted = np.unique(np.concatenate([repeats, firsts]))
        values = rows_of(wanted)
        where = {int(r): i for i, r in enumerate(wanted)}
        a = values[[where[int(r)] for r in repeats]]
        b = values[[where[int(r)] for r in firsts]]
        equal = (a == b).all(1)
        return repeats[equal], firsts[equal]

    # -- statistics --

    def features(self) -> list[FeatureSummary]:
        m = self.p.moments
        if m is None:
            return []
        names: list[str] = [str(self.name(i)) for i in range(m.width)]
        shape = self.source.sample_shape
        if m.width > MAX_FEATURES:
            channels = shape[-1] if shape and len(shape) >= 2 and shape[-1] <= 4 else 1
            m = m.grouped(np.arange(m.width) % channels, channels)
            names = [f"channel {c}" for c in range(channels)] if channels > 1 else ["all"]
        std = m.std()
        return [
            FeatureSummary(
                names[i],
                int(m.count[i]),
                int(m.nonfinite[i]),
                *(
                    float(v) if m.count[i] else None
                    for v in (m.minimum[i], m.maximum[i], m.mean[i], std[i])
                ),
            )
            for i in range(m.width)
        ]

    def histograms(self, limit: int = 24) -> list[Histogram]:
        """Sampled values of the features named in findings, then of varying features spread
        across the row (constant ones have nothing to show)."""
        if self.sample is None or not len(self.sample):
            return []
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            varying = np.flatnonzero(np.nanmax(self.sample, 0) > np.nanmin(self.sample, 0))
        index = {self.name(i): i for i in range(self.sample.shape[1])}
        named = [index[f.feature] for f in self.findings if f.feature in index]
        spread = varying[np.linspace(0, len(varying) - 1, min(limit, len(varying))).astype(int)]
        out: list[Histogram] = []
        for f in dict.fromkeys([*named, *spread.tolist()]):
            if len(out) >= limit:
                break
            values = self.sample[:, f]
            values = values[np.isfinite(values)]
            if len(values):
                counts, edges = np.histogram(values, bins=24)
                out.append(Histogram(str(self.name(f)), edges.tolist(), counts.tolist()))
        return out


def _per_column(
    fast: Callable[[np.ndarray], np.ndarray],
    nan_aware: Callable[..., np.ndarray],
    columns: np.ndarray,
    holes: np.ndarray,
) -> np.ndarray:
    """``fast(columns)`` per row of ``columns`` (one feature's sampled values each, which it
    may reorder in place), with the NaN-aware version on the rows in ``holes`` (those holding
    NaN)."""
    with_holes = columns[holes]
    if holes.any():
        columns[holes] = 0.0
    out = fast(columns)
    if holes.any():
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: NaN
            out[holes] = nan_aware(with_holes, axis=1)
    return out


def _median(columns: np.ndarray) -> np.ndarray:
    """``np.median(columns, axis=1)`` for rows without NaN, reordering them in place: one
    partition at the middle, where ``np.median`` also partitions the last element out to find
    NaN, which costs a quarter more."""
    n = columns.shape[1]
    half = n // 2
    columns.partition(half, axis=1)
    upper = columns[:, half]
    if n % 2:
        return upper.copy()
    return (columns[:, :half].max(1) + upper) / 2  # np.median's mean of the middle two
