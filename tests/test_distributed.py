"""tf.distribute on CPU: MirroredStrategy on two logical CPUs, and MultiWorkerMirroredStrategy on
two worker processes; one decision for every replica."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
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


def test_heal_quarantines_the_record_on_every_replica() -> None:
    result = _run(100, "heal")
    run = result["report"]["runs"][0]
    assert run["status"] == "healed"
    assert [(i["step"], i["action"]) for i in run["incidents"]] == [(3, "quarantined")]
    assert run["incidents"][0]["dataset_indices"] == [100]
    assert len(run["epoch_losses"]) == 3
    assert result["same_on_replicas"] and result["finite"]


def test_hand_written_mirrored_loop_skips_the_nan_step_and_names_the_sample(
    tmp_path: Path,
) -> None:
    script = str(Path(__file__).parent / "scripts" / "mirrored_loop.py")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    plain = subprocess.run(
        [sys.executable, script], capture_output=True, text=True, timeout=300, env=env
    )
    assert plain.stdout.strip().endswith("finite False"), plain.stderr[-2000:]
    report = str(tmp_path / "r.json")
    out = subprocess.run(
        [sys.executable, "-m", "nanguard", "run", "--policy", "skip", "--json", report, script],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.stdout.strip().endswith("finite True"), out.stderr[-2000:]
    assert "cannot guard" not in out.stderr
    run = json.loads(Path(report).read_text())["runs"][0]
    assert (run["kind"], run["status"]) == ("custom_loop", "completed")
    incident = run["incidents"][0]
    assert (incident["step"], incident["root_cause"], incident["samples"]) == (
        3,
        "input_nonfinite",
        [24],
    )


def test_heal_under_central_storage_quarantines_the_record() -> None:
    # Variables on one device, computation on two replicas: the guard keeps plain variables
    # there (per-replica ones would be written through a merge_call inside its tf.cond).
    result = _run(100, "heal", "central")
    run = result["report"]["runs"][0]
    assert result["replicas"] == 2 and run["status"] == "healed"
    assert [(i["step"], i["action"]) for i in run["incidents"]] == [(3, "quarantined")]
    assert run["incidents"][0]["dataset_indices"] == [100]
    assert result["finite"]


@pytest.mark.parametrize("clip", [(), ("clip",)])
def test_healthy_mirrored_run_matches_unguarded_weights_and_has_no_incident(clip: tuple) -> None:
    # Without clipping the guard sums the gradients with its verdicts in one all-reduce; with
    # clipnorm (applied per replica before the sum) Keras sums them itself.
    guarded, plain = _run(-1, "stop", *clip), _run(-1, "plain", *clip)
    run = guarded["report"]["runs"][0]
    assert run["status"] == "completed" and run["incidents"] == []
    assert guarded["same_on_replicas"] and guarded["finite"]
    assert guarded["weights"] == plain["weights"]


# -- MultiWorkerMirroredStrategy: two worker processes on loopback ----------------------------

MULTIWORKER = Path(__file__).parent / "scripts" / "multiworker.py"
# Global batch 32 = 16 rows per worker: row 100 is in worker 0's share of step 3, row 120 in
# worker 1's share of step 3, row 136 in worker 0's share of step 4.
SCENARIOS = ("stop:100", "plain:100", "skip:120+136", "plain:120+136", "stop:-1", "plain:-1")
CLUSTER_TIMEOUT = 240.0


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _wait(workers: list[subprocess.Popen], deadline: float) -> None:
    """Until every worker exits, one fails (the others would wait for it in a collective until
    the deadline), or the deadline passes."""
    while time.monotonic() < deadline:
        codes = [w.poll() for w in workers]
        if all(c is not None for c in codes) or any(c not in (None, 0) for c in codes):
            return
        time.sleep(0.2)


def _cluster(folder: Path, scenarios: tuple[str, ...]) -> list[dict]:
    """Run the worker script on two processes (TF_CONFIG on 127.0.0.1); their JSON lines, by
    worker. Both are killed if one fails or the cluster runs past its timeout."""
    addresses = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    workers, logs = [], []
    try:
        for index in range(2):
            config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
            out, err = folder / f"worker{index}.out", folder / f"worker{index}.err"
            logs.append((out, err))
            with out.open("w") as stdout, err.open("w") as stderr:
                workers.append(
                    subprocess.Popen(
                        [sys.executable, str(MULTIWORKER), *scenarios],
                        stdout=stdout,
                        stderr=stderr,
                        env={
                            **os.environ,
                            "TF_CONFIG": json.dumps(config),
                            "TF_CPP_MIN_LOG_LEVEL": "3",
                        },
                    )
                )
        _wait(workers, time.monotonic() + CLUSTER_TIMEOUT)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait()
    for worker, (_, err) in zip(workers, logs, strict=True):
        assert worker.returncode == 0, err.read_text()[-3000:]
    results = [json.loads(out.read_text().strip().splitlines()[-1]) for out, _ in logs]
    return sorted(results, key=lambda result: result["worker"])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    results = _cluster(tmp_path_factory.mktemp("multiworker"), SCENARIOS)
    assert [r["worker"] for r in results] == [0, 1]
    assert all(r["replicas"] == 2 for r in results)
    return results


def _runs(cluster: list[dict], scenario: str) -> list[dict]:
    return [result["runs"][scenario] for result in cluster]


def _same_trainable_weights(runs: list[dict]) -> bool:
    return all(run["trainable"] == runs[0]["trainable"] for run in runs[1:])


def test_multiworker_nan_stops_every_worker_at_the_exact_step_with_the_sample(
    cluster: list[dict],
) -> None:
    runs = _runs(cluster, "stop:100")
    for run in runs:  # each worker's own report
        report = run["report"]["runs"][0]
        assert report["status"] == "stopped" and report["steps"] == 4
        [incident] = report["incidents"]
        assert incident["step"] == 100 // 32 == 3 and incident["action"] == "stopped"
        assert incident["root_cause"] == "input_nonfinite"
        assert incident["samples"] == [100 - 3 * 32]  # position in the global batch
        assert incident["dataset_indices"] == [100]
        assert run["finite"]  # BatchNormalization's statistics included
    assert _same_trainable_weights(runs)
    assert not any(run["finite"] for run in _runs(cluster, "plain:100"))  # NaN without the guard


def test_multiworker_skip_is_one_decision_for_every_worker(cluster: list[dict]) -> None:
    runs = _runs(cluster, "skip:120+136")
    for run in runs:
        report = run["report"]["runs"][0]
        assert report["status"] == "completed" and report["steps"] == 256 // 32
        incidents = [
            (i["step"], i["root_cause"], i["samples"], i["dataset_indices"], i["action"])
            for i in report["incidents"]
        ]
        assert incidents == [
            (3, "input_nonfinite", [24], [120], "skipped"),  # in worker 1's share
            (4, "input_nonfinite", [8], [136], "skipped"),  # in worker 0's share
        ]
        assert run["finite"]
    assert _same_trainable_weights(runs)
    assert not any(run["finite"] for run in _runs(cluster, "plain:120+136"))


def test_healthy_multiworker_run_matches_unguarded_weights_and_has_no_incident(
    cluster: list[dict],
) -> None:
    guarded, plain = _runs(cluster, "stop:-1"), _runs(cluster, "plain:-1")
    for run, unguarded in zip(guarded, plain, strict=True):
        report = run["report"]["runs"][0]
        assert report["status"] == "completed" and report["incidents"] == []
        assert run["finite"]
        assert run["weights"] == unguarded["weights"]  # exactly, on each worker
    assert _same_trainable_weights(guarded)
