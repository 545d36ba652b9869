"""Do the repro bundles of the fault zoo replay? Bundle written, step reproduced, same diagnosis.

Runs every script under ``benchmarks/zoo/faults/`` through ``nanguard run --quiet --bundles DIR``
in a subprocess, then ``nanguard replay`` on the bundle of its first incident in a fresh
process, and prints per script: whether a bundle was written (and with a model), whether the
replay reproduced the non-finite step (exit code 0), whether the replayed diagnosis matches the
recorded one (root cause, layer, op, samples), and the replay's wall time.

    python benchmarks/replay_zoo.py [--only NAME ...] [--timeout 300]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FAULTS = Path(__file__).resolve().parent / "zoo" / "faults"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def nanguard(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nanguard", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout,
    )


def one(script: Path, work: Path, timeout: float) -> dict[str, object]:
    report, bundles = work / f"{script.stem}.json", work / script.stem
    nanguard("run", "--quiet", "--bundles", str(bundles), "--json", str(report), str(script),
             timeout=timeout)  # fmt: skip
    row: dict[str, object] = {"script": script.stem, "bundle": False}
    try:
        runs = json.loads(report.read_text())["runs"]
    except (OSError, ValueError):
        return row
    first = next((r["incidents"][0] for r in runs if r["incidents"]), None)
    folder = bundles / f"step-{first['step']}" if first else None
    if folder is None or not (folder / "incident.json").is_file():
        return row
    row["bundle"] = True
    row["model"] = (folder / "model.keras").is_file()
    began = time.perf_counter()
    out = nanguard("replay", str(folder), "--json", str(work / f"{script.stem}.replay.json"),
                   timeout=timeout)  # fmt: skip
    row["seconds"] = time.perf_counter() - began
    row["exit"] = out.returncode
    try:
        result = json.loads((work / f"{script.stem}.replay.json").read_text())
    except OSError:
        row["error"] = out.stderr.strip().splitlines()[-1][:200] if out.stderr.strip() else "?"
        return row
    row["reproduced"] = result["reproduced"]
    row["matches"] = result["diagnosis_matches"]
    row["detail"] = result["replay"]["detail"][:90]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    scripts = sorted(FAULTS.glob("*.py"))
    if args.only:
        scripts = [s for s in scripts if s.stem in args.only]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for script in scripts:
            row = one(script, Path(tmp), args.timeout)
            rows.append(row)
            marks = " ".join(
                f"{key}={row.get(key)}" for key in ("bundle", "model", "reproduced", "matches")
            )
            extra = row.get("error") or row.get("detail") or ""
            print(f"{row['script']:<32} {marks} {row.get('seconds', 0):5.1f}s  {extra}", flush=True)
    bundled = [r for r in rows if r["bundle"]]
    print(
        f"\n{len(scripts)} fault scripts: bundle written for {len(bundled)}, with a model for "
        f"{sum(bool(r.get('model')) for r in bundled)}; replay reproduced "
        f"{sum(bool(r.get('reproduced')) for r in bundled)}, diagnosis matched "
        f"{sum(bool(r.get('matches')) for r in bundled)}, failed to replay "
        f"{sum('error' in r for r in bundled)}"
    )
    times = [float(r["seconds"]) for r in bundled if "seconds" in r]
    if times:
        print(
            f"replay wall time per bundle (fresh process, TensorFlow import included): median "
            f"{statistics.median(times):.1f} s, max {max(times):.1f} s"
        )


if __name__ == "__main__":
    main()
