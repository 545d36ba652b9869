"""Throughput and memory of ``nanguard audit``, each beside its baseline, measured in one run.

    python benchmarks/audit_throughput.py [--npy-gb 1] [--rss-gb 1 4] [--dir /tmp/ng-bench]

Prints, for the same files and a warm page cache (each timing the best of ``--repeat`` rounds,
configurations alternating within a round):
- float32 ``.npy``: audit GB/s, and its time over one ``np.isfinite(x).all()`` pass on the
  memory-mapped file;
- CSV: audit time over ``pyarrow.csv.read_csv`` alone, and pandas ``read_csv`` +
  ``describe()`` + ``isna()`` beside it;
- image folder (PNG): audit time over decoding alone (``np.asarray(Image.open(p))`` per file);
- peak resident memory of the audit in a fresh process on ``.npy`` files of each size in
  ``--rss-gb`` (the data never has to fit in memory).
Files are written once under ``--dir`` and reused; delete the folder afterwards.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def best(functions: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Best wall time of each function over ``repeat`` rounds, alternating within a round."""
    times = {name: float("inf") for name in functions}
    for fn in functions.values():  # warm-up: page cache, imports, worker start
        fn()
    for _ in range(repeat):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            times[name] = min(times[name], time.perf_counter() - start)
    return times


def write_npy(path: Path, gb: float, width: int = 784) -> Path:
    rows = int(gb * 1e9 / (4 * width))
    if path.exists() and path.stat().st_size >= rows * width * 4:
        return path
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, width))
    rng = np.random.default_rng(0)
    step = 50_000
    for start in range(0, rows, step):
        out[start : start + step] = rng.random((min(step, rows - start), width), np.float32)
    out[rows // 2, 55] = np.nan
    out.flush()
    del out
    return path


def write_csv(path: Path, rows: int = 500_000, width: int = 10) -> Path:
    if not path.exists():
        import pyarrow as pa
        import pyarrow.csv as pacsv

        rng = np.random.default_rng(1)
        columns = {f"f{i}": rng.standard_normal(rows) for i in range(width)}
        columns["label"] = rng.integers(0, 10, rows).astype(np.float64)
        pacsv.write_csv(pa.table(columns), path)
    return path


def write_images(root: Path, count: int = 2000, size: int = 64) -> Path:
    from PIL import Image

    if not root.exists():
        rng = np.random.default_rng(2)
        for i in range(count):
            folder = root / f"class{i % 10}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, (size, size, 3), np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:05d}.png")
    return root


def peak_rss_mb(path: Path) -> float:
    """Peak resident memory (MB) of a fresh process that audits ``path`` (one process).

    Read from /proc/self/status (VmHWM), which starts afresh at exec; ``ru_maxrss`` would
    carry over the peak of this benchmark process, which forked it.
    """
    code = (
        "from nanguard.audit.api import audit_paths\n"
        f"audit_paths([{str(path)!r}], workers=1)\n"
        "status = open('/proc/self/status').read().split('VmHWM:')[1]\n"
        "print(int(status.split()[0]) / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/tmp/ng-bench", type=Path)
    parser.add_argument("--npy-gb", type=float, default=1.0)
    parser.add_argument("--rss-gb", type=float, nargs="*", default=[1.0, 4.0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip", nargs="*", default=[], choices=["npy", "csv", "images", "rss"])
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    from nanguard.audit.api import audit_paths

    workers = os.cpu_count() or 1
    print(f"machine: {workers} CPUs; numpy {np.__version__}")

    if "npy" not in args.skip:
        npy = write_npy(args.dir / f"x_{args.npy_gb:g}gb.npy", args.npy_gb)
        size = npy.stat().st_size / 1e9
        t = best(
            {
                "isfinite": lambda: bool(np.isfinite(np.load(npy, mmap_mode="r")).all()),
                "audit_1": lambda: audit_paths([npy], workers=1),
                "audit_n": lambda: audit_paths([npy], workers=workers),
            },
            args.repeat,
        )
        print(
            f"npy {size:.2f} GB float32: np.isfinite(x).all() {t['isfinite']:.2f} s "
            f"({size / t['isfinite']:.2f} GB/s); audit 1 process {t['audit_1']:.2f} s "
            f"({size / t['audit_1']:.2f} GB/s, {t['audit_1'] / t['isfinite']:.2f}x isfinite); "
            f"audit {workers} processes {t['audit_n']:.2f} s ({size / t['audit_n']:.2f} GB/s, "
            f"{t['audit_n'] / t['isfinite']:.2f}x isfinite)"
        )

    if "csv" not in args.skip:
        import pandas as pd
        import pyarrow.csv as pacsv

        csv = write_csv(args.dir / "table.csv")

        def pandas_describe() -> None:
            frame = pd.read_csv(csv)
            frame.describe()
            frame.isna().sum()

        t = best(
            {
                "read_csv": lambda: pacsv.read_csv(csv),
                "audit": lambda: audit_paths([csv], labels="label", workers=1),
                "pandas": pandas_describe,
            },
            args.repeat,
        )
        mb = csv.stat().st_size / 1e6
        print(
            f"csv {mb:.0f} MB: pyarrow.csv.read_csv {t['read_csv']:.2f} s; audit "
            f"{t['audit']:.2f} s ({t['audit'] / t['read_csv']:.2f}x read_csv); pandas read_csv + "
            f"describe() + isna() {t['pandas']:.2f} s ({t['pandas'] / t['read_csv']:.2f}x)"
        )

    if "images" not in args.skip:
        from PIL import Image

        root = write_images(args.dir / "images")
        files = sorted(str(p) for p in root.rglob("*.png"))

        def decode() -> None:
            for path in files:
                np.asarray(Image.open(path))

        t = best(
            {
                "decode": decode,
                "audit_1": lambda: audit_paths([root], workers=1),
                "audit_n": lambda: audit_paths([root], workers=workers),
            },
            args.repeat,
        )
        print(
            f"images {len(files)} PNG 64x64 RGB: decoding alone {t['decode']:.2f} s; audit 1 "
            f"process {t['audit_1']:.2f} s ({t['audit_1'] / t['decode']:.2f}x decoding); audit "
            f"{workers} processes {t['audit_n']:.2f} s ({t['audit_n'] / t['decode']:.2f}x)"
        )

    if "rss" not in args.skip:
        for gb in args.rss_gb:
            npy = write_npy(args.dir / f"x_{gb:g}gb.npy", gb)
            size = npy.stat().st_size / 1e9
            peak = peak_rss_mb(npy)
            print(f"peak RSS auditing a {size:.2f} GB .npy in one process: {peak:.0f} MB")


if __name__ == "__main__":
    main()
