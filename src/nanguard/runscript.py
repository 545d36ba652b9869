"""``nanguard run SCRIPT ARGS...``: run a script as ``python SCRIPT ARGS...`` would, guarded.

Same ``sys.argv``, ``__name__ == "__main__"``, the script's folder first on ``sys.path``, and
its exit code. Its own exceptions keep their traceback (without nanguard's frames); the report
is written whatever happens.
"""

from __future__ import annotations

import runpy
import sys
import traceback
from pathlib import Path
from types import TracebackType

from nanguard.contract import Report


class UsageError(Exception):
    """Bad command-line input: reported as one line, exit code 2."""


def write_outputs(report: Report, json_path: str | None, report_dir: str | None) -> None:
    if json_path:
        report.save_json(json_path)
    if report_dir:
        from nanguard.render.series import save_series

        report.save_json(Path(report_dir) / "report.json")
        save_series(report.runs, Path(report_dir) / "series.json")
        report.save_html(Path(report_dir) / "report.html")


def run_script(
    script: str,
    args: list[str],
    *,
    policy: str = "stop",
    json_path: str | None = None,
    report_dir: str | None = None,
    quiet: bool = False,
    bundle_dir: str | None = None,
) -> int:
    """``bundle_dir``: where repro bundles go; by default ``report_dir/bundles`` (on TensorFlow,
    where they can be made). Under ``heal``, records quarantined are listed in
    ``report_dir/quarantine.jsonl``."""
    path = script_path(script, "nanguard run")

    import keras

    from nanguard.guard.session import Session
    from nanguard.probe.halt import is_guard_stop

    if bundle_dir is None and report_dir and keras.backend.backend() == "tensorflow":
        bundle_dir = str(Path(report_dir) / "bundles")  # bundles are replayed on TensorFlow
    quarantine = Path(report_dir) / "quarantine.jsonl" if report_dir and policy == "heal" else None
    session = Session(policy, verbose=not quiet, bundle_dir=bundle_dir, quarantine_file=quarantine)
    session.install()
    try:
        code, error = execute(path, args)
    finally:
        session.uninstall()

    if error is not None and is_guard_stop(error):
        print(f"nanguard: stopped the training loop ({_first_line(error)})", file=sys.stderr)
    elif error is not None and not isinstance(error, KeyboardInterrupt):
        _print_user_traceback(error, path)
    report = session.finish(error)
    if not quiet:
        from nanguard.render.terminal import print_run_summary

        for run in report.runs:
            print_run_summary(run, warnings=False)  # each was printed as it appeared
    write_outputs(report, json_path, report_dir)
    return code


def script_path(script: str, command: str) -> Path:
    """``script`` as a path, or a :class:`UsageError` naming ``command`` and the file."""
    path = Path(script)
    if not path.is_file():
        raise UsageError(f"{command}: {script}: no such file")
    if path.suffix not in ("", ".py", ".pyw"):
        raise UsageError(f"{command}: {script}: not a Python script")
    return path


def execute(path: Path, args: list[str]) -> tuple[int, BaseException | None]:
    """Run the script as ``python SCRIPT ARGS...`` would: (its exit code, what it raised)."""
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    sys.argv = [str(path), *args]
    sys.path.insert(0, str(path.resolve().parent))
    try:
        runpy.run_path(str(path), run_name="__main__")
    except SystemExit as exc:
        return _exit_code(exc.code), None
    except KeyboardInterrupt as exc:
        return 130, exc
    except BaseException as exc:
        return 1, exc
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    return 0, None


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _first_line(error: BaseException) -> str:
    from nanguard.probe.halt import STOP_MESSAGE

    text = str(error).strip()
    for line in text.splitlines():
        if STOP_MESSAGE in line:
            return line[line.index(STOP_MESSAGE) :].strip().strip("[]").strip()
    return text.splitlines()[0] if text else type(error).__name__


def _print_user_traceback(error: BaseException, script: Path) -> None:
    """Print the traceback as Python would, starting at the script's own frames."""
    tb: TracebackType | None = error.__traceback__
    target = str(script.resolve())
    while tb is not None and str(Path(tb.tb_frame.f_code.co_filename).resolve()) != target:
        tb = tb.tb_next
    traceback.print_exception(type(error), error, tb or error.__traceback__, file=sys.stderr)
