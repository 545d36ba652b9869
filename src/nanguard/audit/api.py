"""Open inputs, scan them, check them: ``nanguard.audit(...)`` and ``nanguard audit PATH...``."""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from nanguard.audit.checks import Checker, Robust
from nanguard.audit.engine import Engine
from nanguard.audit.partial import Partial, Settings
from nanguard.audit.report import AuditReport
from nanguard.audit.rowset import RowSet
from nanguard.audit.source import AuditInputError, Source

FORMATS = ".npy, .npz, .csv, .parquet, .tfrecord and image folders"
TABLE_SUFFIXES = {".csv", ".parquet", ".pq", ".tfrecord", ".tfrecords", ".tfrec", ".npz"}


def open_path(path: Path, labels: str | None, shards: int) -> Source:
    """The source for one path; ``labels``: a column/member name, or a label file."""
    from nanguard.audit import arrays

    name = str(path)
    if not path.exists():
        raise AuditInputError(f"{name}: no such file or folder")
    suffix = path.suffix.lower()
    if path.is_dir():
        if labels is not None:
            raise AuditInputError(
                f"{name}: an image folder takes its labels from its subfolder names; drop --labels"
            )
        from nanguard.audit.images import image_source

        return image_source(path, shards)
    label_file = None
    if labels is not None and suffix not in TABLE_SUFFIXES:
        candidate = Path(labels)
        if not candidate.is_file():
            raise AuditInputError(
                f"{labels}: no such labels file (for {suffix or 'this'} input, --labels is a .npy "
                "or one-column .csv file)"
            )
        label_file = arrays.load_label_file(candidate)
    if suffix == ".npy":
        return arrays.npy_source(path, label_file, shards)
    if suffix == ".npz":
        return arrays.npz_source(path, labels, None)
    if suffix in (".csv", ".tsv"):
        from nanguard.audit.tables import csv_source

        return csv_source(path, labels)
    if suffix in (".parquet", ".pq"):
        from nanguard.audit.tables import parquet_source

        return parquet_source(path, labels, shards)
    if suffix in (".tfrecord", ".tfrecords", ".tfrec"):
        from nanguard.audit.tfdata import tfrecord_source

        return tfrecord_source(path, labels)
    raise AuditInputError(
        f"{name}: unknown format {suffix or '(no suffix)'!r}; nanguard audit reads {FORMATS}"
    )


KEY_COLUMNS = 32


def key_columns(source: Source) -> tuple[int, ...] | None:
    """For wide rows with random access: the duplicate keys hash only the 32 columns that vary
    most in the first rows (rows with equal keys are then compared in full); else all."""
    if source.rows_of is None or not source.size:
        return None
    head = source.rows_of(np.arange(min(source.size, 1024)))
    if head.shape[1] <= 2 * KEY_COLUMNS:
        return None
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        spread = np.nan_to_num(np.nanvar(head.astype(np.float64), axis=0), nan=-1.0)
    return tuple(sorted(np.argsort(-spread, kind="stable")[:KEY_COLUMNS].tolist()))


def settings_for(source: Source, num_classes: int | None, several: bool) -> Settings:
    return Settings(
        num_classes=num_classes if num_classes is not None else source.num_classes,
        blank_check=source.image_like,
        key_columns=None if several else key_columns(source),
    )


def scan_sources(
    sources: list[Source], num_classes: int | None, engine: Engine
) -> tuple[Partial, Source, dict[int, RowSet], Robust | None]:
    """Scan the sources one after the other as one dataset (rows numbered across them), then,
    only if some feature has values past the outlier bounds, find their rows."""
    first = sources[0]
    several = len(sources) > 1
    merged: Partial | None = None
    files: list[str] = []
    offsets: list[int] = []
    for source in sources:
        offsets.append(merged.rows if merged else 0)
        if (source.feature_names or None) != (first.feature_names or None) and several:
            raise AuditInputError(
                f"{source.name}: its columns differ from those of {first.name}; audit them apart"
            )
        settings = settings_for(source, num_classes, several)
        partial = engine.scan(source, settings, merged.rows if merged else 0)
        if merged is None:
            merged = partial
        else:
            try:
                merged.merge(partial)
            except ValueError as exc:
                raise AuditInputError(f"{source.name}: {exc}; audit it apart") from exc
        files += source.files or []
    assert merged is not None
    robust = Robust(merged) if merged.sample is not None and len(merged.sample.keys) else None
    outliers: dict[int, RowSet] = {}
    if robust is not None and len(robust.features):
        features = robust.features
        for source, offset in zip(sources, offsets, strict=True):
            found = engine.find_rows(
                source, features, robust.low[features], robust.high[features], offset
            )
            for f, rows in found.items():
                outliers.setdefault(f, RowSet()).merge(rows)
    if not several:
        return merged, first, outliers, robust
    combined = Source(
        ", ".join(s.name for s in sources),
        [],
        first.kind,
        feature_names=first.feature_names,
        sample_shape=first.sample_shape,
        label_name=first.label_name,
        num_classes=first.num_classes,
        class_names=first.class_names,
        files=files or None,
        notes=[n for s in sources for n in s.notes],
    )
    return merged, combined, outliers, robust


def build_report(
    scanned: tuple[Partial, Source, dict[int, RowSet], Robust | None],
    num_classes: int | None,
    seconds: float,
    sources: list[str],
) -> AuditReport:
    partial, source, outliers, robust = scanned
    checker = Checker(partial, source, num_classes, robust, outliers)
    findings = checker.run()
    return AuditReport(
        rows=partial.rows,
        findings=findings,
        features=checker.features(),
        histograms=checker.histograms(),
        sources=sources,
        notes=list(source.notes),
        seconds=seconds,
    )


def audit_paths(
    paths: list[str | os.PathLike[str]],
    labels: str | None = None,
    num_classes: int | None = None,
    engine: str = "local",
    workers: int | None = None,
    scheduler: str | None = None,
) -> AuditReport:
    """Audit files and folders as one dataset. Raises :class:`AuditInputError` on input the
    audit cannot start on; unreadable files inside it become ``corrupt_file`` findings."""
    if num_classes is not None and num_classes < 1:
        raise AuditInputError(f"--num-classes must be at least 1; got {num_classes}")
    begin = time.perf_counter()
    with Engine(engine, workers, scheduler) as runner:
        sources = [open_path(Path(p), labels, runner.shards_per_source) for p in paths]
        scanned = scan_sources(sources, num_classes, runner)
    return build_report(scanned, num_classes, time.perf_counter() - begin, [str(p) for p in paths])


def _is_tf_dataset(x: Any) -> bool:
    return type(x).__module__.startswith("tensorflow") and hasattr(x, "element_spec")


def audit(x: Any, y: Any = None, num_classes: int | None = None) -> AuditReport:
    """Audit training data before training; returns an :class:`AuditReport` (CONTRACT §4).

    ``x``: arrays (NumPy, lists; several inputs as a dict, list or tuple of arrays), a pandas
    DataFrame, a ``tf.data.Dataset``
    (elements ``x`` or ``(x, y)`` as ``fit`` takes them), or a path or list of paths (as the
    command line takes them). ``y``: labels or targets (for a DataFrame also a column name; for
    paths a column name or a label file). ``num_classes``: the model's output units, to check
    class labels against. Nothing is trained and TensorFlow is imported only for a dataset or a
    TFRecord file.

    Example:

    ```python
    report = nanguard.audit(x_train, y_train, num_classes=10)
    for finding in report.errors:
        print(finding.message)
    report.save_html("audit.html")
    ```
    """
    if isinstance(x, str | os.PathLike) or (
        isinstance(x, list | tuple) and x and all(isinstance(p, str | os.PathLike) for p in x)
    ):
        paths = [x] if isinstance(x, str | os.PathLike) else list(x)
        return audit_paths(paths, labels=None if y is None else str(y), num_classes=num_classes)
    begin = time.perf_counter()
    if _is_tf_dataset(x):
        if y is not None:
            raise ValueError("a tf.data.Dataset carries its labels: pass y=None")
        from nanguard.audit.tfdata import dataset_source

        source = dataset_source(x)
    else:
        from nanguard.audit.memory import memory_source

        source = memory_source(x, y)
    scanned = scan_sources([source], num_classes, Engine("local", workers=1))
    return build_report(scanned, num_classes, time.perf_counter() - begin, [source.name])
