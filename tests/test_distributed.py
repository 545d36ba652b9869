"""tf.distribute.MirroredStrategy on two logical CPUs: one decision for every replica."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "scripts" / "mirrored.py"


def _run(bad_row: int, *extra: str) -> dict:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), str(bad_row), *extra],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("bad_row", "replica_sample"), [(100, 4), (120, 24)])
def test_nan_on_one_replica_stops_all_at_the_exact_step(bad_row: int, replica_sample: int) -> None:
    result = _run(bad_row)
    assert result["replicas"] == 2
    run = result["report"]["runs"][0]
    assert run["status"] == "stopped"
    incident = run["incidents"][0]
    assert incident["step"] == bad_row // 32 == 3
    assert incident["root_cause"] == "input_nonfinite"
    assert incident["samples"] == [replica_sample]  # position in the global batch of 32
    assert result["same_on_replicas"] and result["finite"]


def test_healthy_mirrored_run_matches_unguarded_weights_and_has_no_incident() -> None:
    guarded, plain = _run(-1), _run(-1, "plain")
    run = guarded["report"]["runs"][0]
    assert run["status"] == "completed" and run["incidents"] == []
    assert guarded["same_on_replicas"] and guarded["finite"]
    assert guarded["weights"] == plain["weights"]
