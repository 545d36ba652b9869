"""How often ``--policy heal`` rescues the zoo's fault scripts whose cause heal acts on.

Runs every fault script whose ``EXPECTED`` root cause is heal-able (bad records, training
dynamics, float16 overflow: see :mod:`nanguard.heal.healer`) through
``python -m nanguard run --policy heal --quiet --json OUT SCRIPT`` and, for the time ratio, once
plainly (``python SCRIPT``). Per script it prints the run's status, its first and final loss
(epoch losses, or without two epochs the starting loss and the mean of the last fifth of the
steps), the actions taken, and heal's wall time over the plain run's. A script counts as healed
when its run's status is ``healed`` (completed, with a finite final loss below the first).

    python benchmarks/zoo/heal.py [--root DIR] [--only NAME ...] [--jobs 1] [--json FILE]

A benchmark, not a test: the exit code is 0 whatever the rate.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nanguard.heal.healer import DYNAMICS, RECORDS

from score import ZOO, Script, discover, run_process

HEALABLE = (*RECORDS, *DYNAMICS, "float16_overflow")


def heal_one(script: Script, timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="zoo_heal_") as tmp:
        out = Path(tmp) / "report.json"
        argv = [sys.executable, "-m", "nanguard", "run", "--policy", "heal", "--quiet"]
        healed = run_process(script, [*argv, "--json", str(out), str(script.path)], timeout)
        report = json.loads(out.read_text()) if out.exists() else None
    plain = run_process(script, [sys.executable, str(script.path)], timeout)
    runs = (report or {}).get("runs", [])
    run = runs[0] if runs else {}
    incidents = run.get("incidents", [])
    return {
        "name": script.name,
        "cause": script.expected["root_cause"],
        "kind": run.get("kind"),
        "status": run.get("status", healed.note or f"no report (exit {healed.returncode})"),
        "epoch_losses": run.get("epoch_losses", []),
        "actions": sorted({i["action"] for i in incidents}),
        "incidents": len(incidents),
        "seconds": round(healed.seconds, 1),
        "time_ratio": round(healed.seconds / plain.seconds, 2) if plain.seconds else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ZOO)
    parser.add_argument("--only", action="append", default=[])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    scripts = [
        s
        for s in discover(args.only, args.root.resolve())
        if s.kind == "fault" and s.expected["root_cause"] in HEALABLE
    ]
    if not scripts:
        print("no heal-able fault scripts found", file=sys.stderr)
        return 2
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda s: heal_one(s, args.timeout), scripts))
    for r in results:
        losses = r["epoch_losses"]
        shown = f"{losses[0]:.3g} -> {losses[-1]:.3g}" if len(losses) >= 2 else "-"
        print(
            f"{r['name']:<40} {r['cause']:<24} {r['status']:<10} epochs {shown:<22} "
            f"{','.join(r['actions']):<28} x{r['time_ratio']}"
        )
    healed = sum(r["status"] == "healed" for r in results)
    ratios = [r["time_ratio"] for r in results if r["time_ratio"]]
    print(
        f"\nhealed {healed}/{len(results)} ({healed / len(results):.0%}); heal time over the "
        f"plain (NaN) run: median x{statistics.median(ratios):.2f}"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
