"""Score nanguard's diagnosis on the fault zoo: every script, every field, against ground truth.

Each script under ``faults/`` and ``healthy/`` is a plain Keras training script that opens with a
literal ``EXPECTED`` dict (read here with ``ast.literal_eval``, never executed). This harness runs
each one through ``python -m nanguard run --quiet --json OUT SCRIPT`` in a subprocess, takes the
first incident of the report and compares it with ``EXPECTED``:

- root cause, top-1, on every fault script;
- layer, exact match (``None`` included), on every fault script;
- op, informational, on the fault scripts that name one;
- dataset indices, exact set match, on the sample-caused faults (``dataset_indices`` not None);
- step, exact, on the faults with a deterministic step (``step`` not None);
- healthy scripts: no incident at all;
- the median and max ``diagnosis_seconds`` of the first incidents.

``--verify`` instead runs each script plainly (``python SCRIPT``, no nanguard) and checks the
ground truth itself: a fault script must go non-finite (printed final loss nan/inf) or raise a
TensorFlow error; a healthy one must finish with a finite final loss.

It is a benchmark, not a test: the exit code is 0 whatever the scores, 2 if the harness itself
broke (no scripts, an unreadable EXPECTED).

    python benchmarks/zoo/score.py [--verify] [--jobs 1] [--only NAME ...] [--timeout 300]
                                   [--json FILE] [--root DIR]

``--root DIR`` scores the ``faults/`` and ``healthy/`` folders of another set laid out the same way
(for example the held-out set: ``--root benchmarks/zoo/holdout``); the default is this folder.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ZOO = Path(__file__).resolve().parent
FAULT_FIELDS = ("root_cause", "layer", "op", "dataset_indices", "step")
FINAL_LOSS = re.compile(r"final loss:\s*(\S+)")
TF_ERROR = re.compile(r"(InvalidArgumentError|errors_impl\.\w+Error|ResourceExhaustedError)")


@dataclass
class Script:
    """One zoo script and its ground truth."""

    name: str
    kind: str  # "fault" or "healthy"
    path: Path
    expected: dict[str, Any]


@dataclass
class Outcome:
    """What one run of a script gave."""

    script: Script
    seconds: float
    returncode: int | None
    cpu_seconds: float | None = None
    stdout: str = ""
    stderr: str = ""
    report: dict[str, Any] | None = None
    note: str = ""
    checks: dict[str, bool | None] = field(default_factory=dict)
    got: dict[str, Any] = field(default_factory=dict)


def read_expected(path: Path) -> dict[str, Any]:
    """The literal ``EXPECTED = {...}`` at the top level of ``path``, without running it."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id == "EXPECTED"
        ):
            value = ast.literal_eval(node.value)
            if not isinstance(value, dict):
                raise ValueError(f"{path}: EXPECTED is not a dict")
            return value
    raise ValueError(f"{path}: no top-level EXPECTED = {{...}}")


def discover(only: list[str], root: Path = ZOO) -> list[Script]:
    """All scripts under ``root``, faults first, each filtered by ``--only`` substrings."""
    scripts = []
    for kind, folder in (("fault", "faults"), ("healthy", "healthy")):
        for path in sorted((root / folder).glob("*.py")):
            if only and not any(part in path.stem for part in only):
                continue
            expected = read_expected(path)
            if kind == "fault":
                missing = [f for f in FAULT_FIELDS if f not in expected]
                if missing:
                    raise ValueError(f"{path}: EXPECTED lacks {missing}")
            elif expected != {"healthy": True}:
                raise ValueError(f'{path}: a healthy script expects {{"healthy": True}}')
            scripts.append(Script(path.stem, kind, path, expected))
    return scripts


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env.setdefault("PYTHONWARNINGS", "ignore")
    return env


def run_process(script: Script, argv: list[str], timeout: float) -> Outcome:
    """Run ``argv`` in the script's folder; a timeout is an outcome, not a crash.

    CPU seconds (user + system of the child) are exact with ``--jobs 1`` only: they come from the
    process-wide children counters, which parallel runs share.
    """
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        proc = subprocess.run(
            argv,
            cwd=script.path.parent,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        return Outcome(script, time.perf_counter() - start, None, stdout=out, note="timeout")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Outcome(
        script,
        time.perf_counter() - start,
        proc.returncode,
        cpu_seconds=cpu,
        stdout=proc.stdout,
        stderr=proc.stderr,
    )


def final_loss(stdout: str) -> float | None:
    """The last ``final loss: X`` the script printed, as a float."""
    found = FINAL_LOSS.findall(stdout)
    if not found:
        return None
    try:
        return float(found[-1])
    except ValueError:
        return None


# --- verify: the ground truth without nanguard ----------------------------------------------


def verify_one(script: Script, timeout: float) -> Outcome:
    outcome = run_process(script, [sys.executable, str(script.path)], timeout)
    loss = final_loss(outcome.stdout)
    raised = outcome.returncode not in (0, None) and bool(TF_ERROR.search(outcome.stderr))
    if outcome.note == "timeout":
        ok, what = False, "timeout"
    elif script.kind == "fault":
        if raised:
            error = TF_ERROR.search(outcome.stderr)
            ok, what = True, f"raised {error.group(1) if error else 'error'}"
        elif loss is not None and not math.isfinite(loss):
            ok, what = True, f"final loss {loss}"
        elif outcome.returncode != 0:
            ok, what = False, f"exit {outcome.returncode} without a TF error"
        else:
            ok, what = False, f"final loss {loss} (finite)"
    else:
        finite = loss is not None and math.isfinite(loss)
        ok = outcome.returncode == 0 and finite
        what = f"final loss {loss:.4g}" if finite and loss is not None else f"final loss {loss}"
        if outcome.returncode != 0:
            what += f", exit {outcome.returncode}"
    outcome.note = what
    outcome.checks = {"verified": ok}
    return outcome


# --- score: nanguard's diagnosis against the ground truth -----------------------------------


def first_incident(report: dict[str, Any] | None) -> dict[str, Any] | None:
    for run in (report or {}).get("runs", []):
        for incident in run.get("incidents", []):
            return incident
    return None


def all_incidents(report: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [i for run in (report or {}).get("runs", []) for i in run.get("incidents", [])]


def score_one(script: Script, timeout: float) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="zoo_") as tmp:
        out = Path(tmp) / "report.json"
        argv = [sys.executable, "-m", "nanguard", "run", "--quiet", "--json", str(out)]
        outcome = run_process(script, [*argv, str(script.path)], timeout)
        if out.exists():
            try:
                outcome.report = json.loads(out.read_text())
            except json.JSONDecodeError as exc:
                outcome.note = f"unreadable report: {exc}"
    if outcome.report is None and not outcome.note:
        tail = outcome.stderr.strip().splitlines()[-1:] or [""]
        outcome.note = f"no report (exit {outcome.returncode}): {tail[0][:120]}"
    incident = first_incident(outcome.report)
    exp = script.expected
    if script.kind == "healthy":
        count = len(all_incidents(outcome.report))
        outcome.got = {"incidents": count}
        if incident is not None:
            outcome.got["root_cause"] = incident.get("root_cause")
        outcome.checks = {"healthy": outcome.report is not None and count == 0}
        return outcome
    got = {f: (incident or {}).get(f) for f in FAULT_FIELDS}
    got["diagnosis_seconds"] = (incident or {}).get("diagnosis_seconds")
    outcome.got = got if incident is not None else {"incident": None}
    checks: dict[str, bool | None] = {
        "root_cause": incident is not None and got["root_cause"] == exp["root_cause"],
        "layer": incident is not None and got["layer"] == exp["layer"],
        "op": None if exp["op"] is None else (incident is not None and got["op"] == exp["op"]),
        "dataset_indices": None
        if exp["dataset_indices"] is None
        else incident is not None
        and got["dataset_indices"] is not None
        and set(got["dataset_indices"]) == set(exp["dataset_indices"]),
        "step": None
        if exp["step"] is None
        else (incident is not None and got["step"] == exp["step"]),
    }
    outcome.checks = checks
    return outcome


# --- printing ----------------------------------------------------------------------------


def _short(value: Any, width: int = 28) -> str:
    text = "None" if value is None else json.dumps(value) if isinstance(value, list) else str(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _cell(name: str, expected: Any, got: Any, ok: bool | None) -> str:
    if ok is None:
        return f"{name} -"
    if ok:
        return f"{name} {_short(expected)} ok"
    return f"{name} {_short(expected)} got {_short(got)} X"


def print_verify(outcomes: list[Outcome]) -> dict[str, Any]:
    width = max(len(o.script.name) for o in outcomes)
    print(f"{'script':<{width}}  {'kind':<7}  {'pass':<4}  {'wall s':>6}  {'cpu s':>5}  result")
    for o in outcomes:
        ok = "yes" if o.checks.get("verified") else "NO"
        cpu = f"{o.cpu_seconds:5.1f}" if o.cpu_seconds is not None else "    -"
        print(
            f"{o.script.name:<{width}}  {o.script.kind:<7}  {ok:<4}  {o.seconds:6.1f}  {cpu}"
            f"  {o.note}"
        )
    passed = sum(bool(o.checks.get("verified")) for o in outcomes)
    walls = [o.seconds for o in outcomes]
    cpus = [o.cpu_seconds for o in outcomes if o.cpu_seconds is not None]
    summary = {
        "mode": "verify",
        "scripts": len(outcomes),
        "passed": passed,
        "faults": sum(o.script.kind == "fault" for o in outcomes),
        "healthy": sum(o.script.kind == "healthy" for o in outcomes),
        "median_wall_seconds": round(statistics.median(walls), 2),
        "max_wall_seconds": round(max(walls), 2),
        "median_cpu_seconds": round(statistics.median(cpus), 2) if cpus else None,
        "max_cpu_seconds": round(max(cpus), 2) if cpus else None,
    }
    print(
        f"\nverified {passed}/{len(outcomes)} ({summary['faults']} faults go non-finite or raise, "
        f"{summary['healthy']} healthy finish finite); wall per script median "
        f"{summary['median_wall_seconds']} s, max {summary['max_wall_seconds']} s; CPU (user+sys) "
        f"median {summary['median_cpu_seconds']} s, max {summary['max_cpu_seconds']} s"
    )
    return summary


def _accuracy(outcomes: Iterable[Outcome], key: str) -> tuple[int, int]:
    values = [o.checks.get(key) for o in outcomes]
    scored = [v for v in values if v is not None]
    return sum(bool(v) for v in scored), len(scored)


def print_score(outcomes: list[Outcome]) -> dict[str, Any]:
    width = max(len(o.script.name) for o in outcomes)
    for o in outcomes:
        exp, got, checks = o.script.expected, o.got, o.checks
        if o.script.kind == "healthy":
            detail = (
                "no incident ok"
                if checks["healthy"]
                else (
                    f"incidents {got.get('incidents')} ({got.get('root_cause')}) X"
                    if o.report is not None
                    else "no report X"
                )
            )
        else:
            cells = [
                _cell(f, exp[f], got.get(f), checks[f])
                for f in ("root_cause", "layer", "dataset_indices", "step", "op")
            ]
            secs = got.get("diagnosis_seconds")
            cells.append(f"{secs:.2f} s" if isinstance(secs, int | float) else "- s")
            detail = " | ".join(cells)
        note = f"  [{o.note}]" if o.note else ""
        print(f"{o.script.name:<{width}}  {detail}{note}")

    faults = [o for o in outcomes if o.script.kind == "fault"]
    healthy = [o for o in outcomes if o.script.kind == "healthy"]
    summary: dict[str, Any] = {"mode": "score", "faults": len(faults), "healthy": len(healthy)}
    print()
    labels = {
        "root_cause": "root cause (top-1, all faults)",
        "layer": "layer (exact, None included, all faults)",
        "dataset_indices": "dataset indices (exact set, sample-caused faults)",
        "step": "step (exact, deterministic faults)",
        "op": "op (informational, faults naming one)",
    }
    for key, label in labels.items():
        right, total = _accuracy(faults, key)
        summary[key] = {
            "right": right,
            "total": total,
            "accuracy": right / total if total else None,
        }
        pct = f"{100 * right / total:5.1f}%" if total else "  n/a"
        print(f"{label:<52} {right:>3}/{total:<3} {pct}")
    right, total = _accuracy(healthy, "healthy")
    summary["healthy_no_incident"] = {
        "right": right,
        "total": total,
        "accuracy": right / total if total else None,
    }
    pct = f"{100 * right / total:5.1f}%" if total else "  n/a"
    print(f"{'healthy scripts without any incident':<52} {right:>3}/{total:<3} {pct}")
    secs = [
        o.got["diagnosis_seconds"]
        for o in faults
        if isinstance(o.got.get("diagnosis_seconds"), int | float)
    ]
    summary["diagnosis_seconds"] = {
        "median": statistics.median(secs) if secs else None,
        "max": max(secs) if secs else None,
        "count": len(secs),
    }
    if secs:
        print(
            f"{'diagnosis_seconds of first incidents':<52} median {statistics.median(secs):.2f} s,"
            f" max {max(secs):.2f} s over {len(secs)}"
        )
    no_report = [o.script.name for o in outcomes if o.report is None]
    summary["no_report"] = no_report
    if no_report:
        print(f"no report from: {', '.join(no_report)}")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--verify", action="store_true", help="run plainly, check ground truth")
    parser.add_argument("--jobs", type=int, default=1, help="scripts run in parallel (default 1)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="only scripts whose name contains NAME (repeatable)",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per script")
    parser.add_argument("--json", metavar="FILE", help="write the scores (or checks) to FILE")
    parser.add_argument(
        "--root",
        type=Path,
        default=ZOO,
        metavar="DIR",
        help="folder holding faults/ and healthy/ (default: the zoo beside this script)",
    )
    args = parser.parse_args(argv)

    try:
        scripts = discover(args.only, args.root.resolve())
    except (OSError, SyntaxError, ValueError) as exc:
        print(f"score.py: {exc}", file=sys.stderr)
        return 2
    if not scripts:
        print("score.py: no zoo scripts matched", file=sys.stderr)
        return 2

    runner: Callable[[Script, float], Outcome] = verify_one if args.verify else score_one
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        outcomes = list(pool.map(lambda s: runner(s, args.timeout), scripts))

    summary = print_verify(outcomes) if args.verify else print_score(outcomes)
    if args.json:
        payload = {
            "summary": summary,
            "scripts": [
                {
                    "name": o.script.name,
                    "kind": o.script.kind,
                    "expected": o.script.expected,
                    "got": o.got,
                    "checks": o.checks,
                    "returncode": o.returncode,
                    "wall_seconds": round(o.seconds, 2),
                    "cpu_seconds": None if o.cpu_seconds is None else round(o.cpu_seconds, 2),
                    "note": o.note,
                }
                for o in outcomes
            ],
        }
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
