"""Image folders: one class per subfolder (Keras' ``image_dataset_from_directory`` layout).

Rows are the images in Keras' order (class folders sorted by name, files sorted within each);
the label of a row is the index of its folder. Statistics are per channel over all pixels.
A file Pillow cannot decode (corrupt, truncated, not an image) is a finding with its path, and
the audit goes on. Shards are contiguous runs of files, decoded in separate processes.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from nanguard.audit.partial import Partial, Settings
from nanguard.audit.source import AuditInputError, Shard, Source, one_line
from nanguard.audit.stats import Moments

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp"}
GRAY_MODES = {"1", "L", "I", "I;16", "F", "LA", "P"}
SHARD_FILES = 500  # fewer files per process do not pay for starting it
FLUSH = 256  # images decoded before their pixels go through the statistics together
FLUSH_BYTES = 32 << 20  # or fewer, when they are large
ROW_PIXELS = 256  # pixels per row of the 2-D view that the integer passes reduce
BLOCK_ROWS = 65_536  # rows per integer pass: its 32-bit sums of squares cannot overflow


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


class _FileBytes(io.BytesIO):
    """A file's bytes, read in one call: Pillow's many small reads and seeks on the file itself
    cost more than decoding a small image. Shown as the path, as Pillow shows a file it
    cannot identify when given the path."""

    def __init__(self, path: str) -> None:
        with open(path, "rb") as f:
            super().__init__(f.read())
        self.path = path

    def __repr__(self) -> str:
        return repr(self.path)


def _decode(path: str, mode: str) -> np.ndarray:
    """The pixels as (height, width, channels). 8-bit images come straight from ``tobytes``,
    as ``np.asarray`` would give them, without its per-image array-interface overhead."""
    from PIL import Image

    with Image.open(_FileBytes(path)) as image:
        image.load()
        if mode == "RGB":
            if image.mode != "RGB":
                image = image.convert("RGB")
        elif image.mode not in ("L", "I", "I;16", "F"):
            image = image.convert("L")
        if image.mode in ("RGB", "L"):
            pixels = np.frombuffer(image.tobytes(), np.uint8)
            return pixels.reshape(image.height, image.width, -1)
        array = np.asarray(image)
    return array.reshape(array.shape[0], array.shape[1], -1)


class ImageShard(Shard):
    def __init__(self, files: list[str], labels: list[int] | None, start: int, mode: str) -> None:
        self.files, self.labels, self.start, self.mode = files, labels, start, mode

    def scan(self, settings: Settings, offset: int) -> Partial:
        """Per channel moments over pixels; per image: blank check, exact key, label."""
        partial = Partial(settings)
        partial.start(1 if self.mode == "gray" else 3, rows=False)
        assert self.start is not None and partial.moments is not None
        start = self.start + offset
        pending: list[tuple[int, np.ndarray]] = []
        held = 0
        for i, path in enumerate(self.files):
            try:
                pending.append((start + i, _decode(path, self.mode)))
                held += pending[-1][1].nbytes
            except Exception as exc:  # Pillow raises many types for bad files
                partial.corrupt.append((path, one_line(exc)))
            if len(pending) >= FLUSH or held >= FLUSH_BYTES:
                _flush(partial, pending)
                held = 0
        _flush(partial, pending)
        if self.labels is not None:
            partial.add_labels(np.asarray(self.labels), start)
        partial.rows = start + len(self.files)
        return partial


def _flush(partial: Partial, pending: list[tuple[int, np.ndarray]]) -> None:
    """The decoded images' pixels through the statistics at once: a few vectorized passes over
    all of them instead of a dozen small NumPy calls per image."""
    if not pending:
        return
    assert partial.moments is not None
    channels = partial.width or 1
    arrays = [a for _, a in pending]
    rows = np.array([row for row, _ in pending], np.int64)
    kind = np.result_type(*arrays)  # the widest: every value stays exact
    flat = partial.scratch.get("pixels", (sum(a.size for a in arrays),), kind)
    np.concatenate([a.reshape(-1) for a in arrays], out=flat)
    finite = True
    if flat.dtype == np.uint8 and all(a.shape[-1] == channels for a in arrays):
        _byte_moments(partial.moments, flat.reshape(-1, channels))
    else:
        pixels = np.concatenate([a.reshape(-1, a.shape[-1])[:, :channels] for a in arrays])
        if pixels.dtype in (np.uint8, np.uint16):  # exact and cheap: counts of each value
            levels = 256 if pixels.dtype == np.uint8 else 65536
            counts = np.stack(
                [np.bincount(pixels[:, c], minlength=levels) for c in range(channels)]
            )
            partial.moments.update_counts(counts)
        else:
            wide = np.float64 if pixels.dtype.kind != "f" else pixels.dtype
            finite = partial.moments.update(pixels.T.astype(wide, "C"), axis=1) is None
    if not finite:
        bad = [row for row, a in pending if a.dtype.kind == "f" and not np.isfinite(a).all()]
        partial.nonfinite.add(np.asarray(bad, np.int64))
    sizes = np.array([a.size for a in arrays])
    filled = sizes > 0  # an empty image is not blank
    if filled.any():
        starts = (np.cumsum(sizes) - sizes)[filled]
        low, high = np.minimum.reduceat(flat, starts), np.maximum.reduceat(flat, starts)
        partial.blank.add(rows[filled][low == high])  # NaN != NaN: a NaN image is not blank
    keys = [_image_key(a) for a in arrays]
    partial.add_keys(np.array(keys, np.uint64), rows)
    pending.clear()


def _byte_moments(moments: Moments, pixels: np.ndarray) -> None:
    """Exact per-channel moments of 8-bit ``pixels`` (shape (pixels, channels)) by integer
    passes: the sums and sums of squares of blocks of ``BLOCK_ROWS`` rows fit in 32 bits
    (``BLOCK_ROWS * 255**2 < 2**32``), and rows of ``ROW_PIXELS`` pixels keep each pass a long
    vector loop; the block sums add up as Python integers."""
    n, channels = pixels.shape
    whole = n - n % ROW_PIXELS
    totals = [0] * channels
    squares = [0] * channels
    low = np.full(channels, 255, np.uint8)
    high = np.zeros(channels, np.uint8)
    for part in (pixels[:whole].reshape(-1, ROW_PIXELS * channels), pixels[whole:]):
        for block in range(0, len(part), BLOCK_ROWS):
            values = part[block : block + BLOCK_ROWS]
            wide = values.astype(np.uint16)
            np.multiply(wide, wide, out=wide)
            sums = values.sum(0, dtype=np.uint32).reshape(-1, channels).sum(0, dtype=np.int64)
            sq = wide.sum(0, dtype=np.uint32).reshape(-1, channels).sum(0, dtype=np.int64)
            for c in range(channels):
                totals[c] += int(sums[c])
                squares[c] += int(sq[c])
            low = np.minimum(low, values.min(0).reshape(-1, channels).min(0))
            high = np.maximum(high, values.max(0).reshape(-1, channels).max(0))
    moments.update_integers(n, totals, squares, low, high)


def _image_key(array: np.ndarray) -> int:
    """64 bits of a hash of the decoded pixels and their shape: equal keys, equal images.
    SHA-1, not for security (64 bits of it collide as rarely as 64 bits of BLAKE2): it runs
    on the CPU's SHA instructions, twice as fast as BLAKE2 here."""
    digest = hashlib.sha1(repr(array.shape).encode(), usedforsecurity=False)
    digest.update(np.ascontiguousarray(array).data)
    return int.from_bytes(digest.digest()[:8], "little")


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
        name,
        pieces,
        "images",
        feature_names=["gray"] if mode == "gray" else ["red", "green", "blue"],
        label_name="class folder" if classes else None,
        num_classes=len(classes) or None,
        class_names=classes or None,
        files=files,
        notes=[f"{name}: {len(files)} images in {len(classes)} class folders"],
    )
