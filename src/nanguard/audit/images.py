"""Image folders: one class per subfolder (Keras' ``image_dataset_from_directory`` layout).

Rows are the images in Keras' order (class folders sorted by name, files sorted within each);
the label of a row is the index of its folder. Statistics are per channel over all pixels.
A file Pillow cannot decode (corrupt, truncated, not an image) is a finding with its path, and
the audit goes on. Shards are contiguous runs of files, decoded in separate processes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from nanguard.audit.partial import Partial, Settings
from nanguard.audit.source import AuditInputError, Shard, Source, one_line

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp"}
GRAY_MODES = {"1", "L", "I", "I;16", "F", "LA", "P"}
SHARD_FILES = 500  # fewer files per process do not pay for starting it
FLUSH = 256  # images decoded before their pixels go through the statistics together


def list_images(root: Path) -> tuple[list[str], list[int], list[str]]:
    """(files, label per file, class names). Files directly in ``root`` have no class."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files: list[str] = []
    labels: list[int] = []
    if classes:
        for index, name in enumerate(classes):
            found = sorted(
                str(p) for p in (root / name).rglob("*") if p.suffix.lower() in EXTENSIONS
            )
            files += found
            labels += [index] * len(found)
    else:
        files = sorted(str(p) for p in root.iterdir() if p.suffix.lower() in EXTENSIONS)
    return files, labels, classes


def _mode(path: str) -> str:
    from PIL import Image

    with Image.open(path) as image:
        return "gray" if image.mode in GRAY_MODES and image.mode != "P" else "RGB"


def _decode(path: str, mode: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        if mode == "RGB":
            if image.mode != "RGB":
                image = image.convert("RGB")
        elif image.mode not in ("L", "I", "I;16", "F"):
            image = image.convert("L")
        array = np.asarray(image)
    return array.reshape(array.shape[0], array.shape[1], -1)


class ImageShard(Shard):
    def __init__(
        self, files: list[str], labels: list[int] | None, start: int, mode: str
    ) -> None:
        self.files, self.labels, self.start, self.mode = files, labels, start, mode

    def scan(self, settings: Settings, offset: int) -> Partial:
        """Per channel moments over pixels; per image: blank check, exact key, label."""
        partial = Partial(settings)
        partial.start(1 if self.mode == "gray" else 3, rows=False)
        assert self.start is not None and partial.moments is not None
        start = self.start + offset
        pending: list[tuple[int, np.ndarray]] = []
        for i, path in enumerate(self.files):
            try:
                pending.append((start + i, _decode(path, self.mode)))
            except Exception as exc:  # Pillow raises many types for bad files
                partial.corrupt.append((path, one_line(exc)))
            if len(pending) >= FLUSH:
                _flush(partial, pending)
        _flush(partial, pending)
        if self.labels is not None:
            partial.add_labels(np.asarray(self.labels), start)
        partial.rows = start + len(self.files)
        return partial


def _flush(partial: Partial, pending: list[tuple[int, np.ndarray]]) -> None:
    if not pending:
        return
    assert partial.moments is not None
    channels = partial.width or 1
    pixels = np.concatenate([a.reshape(-1, a.shape[-1])[:, :channels] for _, a in pending])
    if pixels.dtype in (np.uint8, np.uint16):  # exact and cheap: counts of each value
        levels = 256 if pixels.dtype == np.uint8 else 65536
        counts = np.stack([np.bincount(pixels[:, c], minlength=levels) for c in range(channels)])
        partial.moments.update_counts(counts)
        finite = True
    else:
        by_channel = pixels.T.astype(np.float64 if pixels.dtype.kind != "f" else pixels.dtype, "C")
        finite = partial.moments.update(by_channel, axis=1) is None
    rows = np.array([row for row, _ in pending], np.int64)
    if not finite:
        bad = [row for row, a in pending if a.dtype.kind == "f" and not np.isfinite(a).all()]
        partial.nonfinite.add(np.asarray(bad, np.int64))
    blank = [row for row, a in pending if a.size and a.min() == a.max()]
    partial.blank.add(np.asarray(blank, np.int64))
    keys = [_image_key(a) for _, a in pending]
    partial.add_keys(np.array(keys, np.uint64), rows)
    pending.clear()


def _image_key(array: np.ndarray) -> int:
    """64 bits of a hash of the decoded pixels and their shape: equal keys, equal images."""
    digest = hashlib.blake2b(repr(array.shape).encode(), digest_size=8)
    digest.update(np.ascontiguousarray(array).data)
    return int.from_bytes(digest.digest(), "little")


def image_source(root: Path, shards: int) -> Source:
    name = str(root)
    files, labels, classes = list_images(root)
    if not files:
        raise AuditInputError(
            f"{name}: a folder with no image files ({', '.join(sorted(EXTENSIONS))})"
        )
    mode = "RGB"
    for path in files[:8]:
        try:
            mode = _mode(path)
            break
        except Exception:  # a bad first file: it will be a finding in the scan
            continue
    parts = np.array_split(np.arange(len(files)), max(1, min(shards, len(files) // SHARD_FILES)))
    pieces: list[Shard] = [
        ImageShard(
            [files[i] for i in part],
            [labels[i] for i in part] if classes else None,
            int(part[0]),
            mode,
        )
        for part in parts
        if len(part)
    ]
    return Source(
        name, pieces, "images",
        feature_names=["gray"] if mode == "gray" else ["red", "green", "blue"],
        label_name="class folder" if classes else None,
        num_classes=len(classes) or None, class_names=classes or None, files=files,
        notes=[f"{name}: {len(files)} images in {len(classes)} class folders"],
    )
