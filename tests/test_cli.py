"""`nanguard` on the command line, as a user runs it (subprocesses, real scripts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).parent / "scripts"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def nanguard(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nanguard", *args],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=cwd,
        timeout=300,
    )


def test_help_and_import_do_not_load_tensorflow() -> None:
    probe = "import sys, nanguard.cli; assert 'tensorflow' not in sys.modules; print('ok')"
    assert (
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout
        == "ok\n"
    )
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "nanguard", "--help"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and "run" in out.stdout and "demo" in out.stdout
    assert "tensorflow" not in out.stderr and "keras" not in out.stderr


def test_missing_script_is_one_line_and_exit_2() -> None:
    out = nanguard("run", "missing.py")
    assert out.returncode == 2
    assert out.stderr.strip() == "nanguard run: missing.py: no such file"


def test_run_guards_fit_and_keeps_argv_and_writes_reports(tmp_path: Path) -> None:
    out = nanguard(
        "run",
        "--report",
        str(tmp_path / "r"),
        "--json",
        str(tmp_path / "run.json"),
        str(SCRIPTS / "fit_nan.py"),
        "--flag",
        "value",
    )
    assert out.returncode == 0, out.stderr
    assert "argv=['--flag', 'value'] name=__main__ path0=scripts finite=True" in out.stdout
    assert "input_nonfinite" in out.stderr  # the incident card and the summary line
    report = json.loads((tmp_path / "run.json").read_text())
    run = report["runs"][0]
    assert (run["kind"], run["status"], run["steps"]) == ("fit", "stopped", 3)
    incident = run["incidents"][0]
    assert (incident["step"], incident["samples"], incident["features"]) == (2, [6], [1])
    assert incident["dataset_indices"] == [70]
    assert json.loads((tmp_path / "r" / "report.json").read_text()) == report
    assert "input_nonfinite" in (tmp_path / "r" / "report.html").read_text()


def test_quiet_healthy_run_prints_only_the_script(tmp_path: Path) -> None:
    out = nanguard("run", "--quiet", str(SCRIPTS / "exits.py"), "0")
    assert out.returncode == 0 and out.stdout == "" and "nanguard" not in out.stderr


def test_healthy_run_prints_each_warning_once_then_one_summary_line() -> None:
    out = nanguard("run", str(SCRIPTS / "fit_warned.py"))
    assert out.returncode == 0 and out.stdout == "finite True\n", out.stderr
    lines = [line for line in out.stderr.splitlines() if "nanguard" in line]
    assert len(lines) == 2, out.stderr
    assert lines[0].startswith("nanguard: warning at step 0 of warned: learning_rate_too_high")
    assert lines[1] == "nanguard: warned: 16 steps, no non-finite value (fit); 1 warning"
    assert out.stderr.count("learning_rate_too_high") == 1  # not listed again under the summary


def test_exit_code_and_traceback_of_the_script_are_kept(tmp_path: Path) -> None:
    assert nanguard("run", str(SCRIPTS / "exits.py"), "3").returncode == 3
    out = nanguard("run", "--json", str(tmp_path / "r.json"), str(SCRIPTS / "raises.py"))
    assert out.returncode == 1
    assert "Traceback" in out.stderr and "ValueError: cannot read shard 7" in out.stderr
    assert "runpy" not in out.stderr  # nanguard's own frames are not shown
    report = json.loads((tmp_path / "r.json").read_text())
    assert [r["status"] for r in report["runs"]] == ["completed"]


def test_run_guards_a_hand_written_gradient_tape_loop(tmp_path: Path) -> None:
    out = nanguard("run", "--json", str(tmp_path / "r.json"), str(SCRIPTS / "tape_loop.py"))
    assert out.returncode == 1
    assert out.stdout.count("loss ") == 2  # steps 0 and 1 ran; step 2 held the record
    assert (
        "nanguard: stopped the training loop (nanguard: training stopped at step 2)" in out.stderr
    )
    run = json.loads((tmp_path / "r.json").read_text())["runs"][0]
    assert (run["kind"], run["status"]) == ("custom_loop", "stopped")
    incident = run["incidents"][0]
    assert (incident["step"], incident["root_cause"], incident["samples"]) == (
        2,
        "input_nonfinite",
        [13],
    )


def test_unguarded_tape_loop_really_goes_nan() -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPTS / "tape_loop.py")],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert "loss nan" in out.stdout


def test_demo_stops_every_scenario_and_prints_no_tensorflow_noise() -> None:
    out = nanguard("demo")
    assert out.returncode == 0, out.stderr[-2000:]
    summaries = [line for line in out.stderr.splitlines() if " incident(s), first at step " in line]
    assert len(summaries) == 6 and all(": stopped after " in line for line in summaries)
    assert "retracing" not in out.stderr  # one weight sampler per model, traced once each


def test_demo_lists_its_scenarios() -> None:
    out = nanguard("demo", "--list")
    assert out.returncode == 0 and "corrupt-image" in out.stdout and "gradient-tape" in out.stdout
    assert nanguard("demo", "--only", "nope").returncode == 2
