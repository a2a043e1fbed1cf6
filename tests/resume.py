"""Kill `seqflow run` mid-training, run the same command again, compare with an uninterrupted
run: the harness every pipeline's resume test uses (real processes, Prefect, MLflow, files)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient


def store(data_dir: Path) -> MlflowClient:
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def environment(data_dir: Path) -> dict:
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ, SEQFLOW_DATA_DIR=str(data_dir), PREFECT_API_URL=PREFECT_API_URL.value(),
               OMP_NUM_THREADS="1")  # fmt: skip
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def start(args: list[str], data_dir: Path, log: Path) -> subprocess.Popen:
    """`seqflow ...` as a user runs it, output to a file (a pipe could fill and block it)."""
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "flows.cli", *args],
                                env=environment(data_dir), stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip


def run(args: list[str], data_dir: Path, log: Path, timeout: float = 600) -> int:
    proc = start(args, data_dir, log)
    try:
        return proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()


def wait_for(check, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"seqflow exited ({proc.returncode}) before {what}")
        time.sleep(0.02)
    raise TimeoutError(f"no {what} within {timeout:.0f} s")


def checkpoints(data_dir: Path, pipeline: str) -> list[Path]:
    return sorted((data_dir / "checkpoints" / pipeline).glob("*/epoch-*.pt"))


def parent_runs(data_dir: Path, pipeline: str) -> list:
    c = store(data_dir)
    exp = c.get_experiment_by_name(pipeline)
    if exp is None:
        return []
    found = c.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
    return [r for r in found if "mlflow.parentRunId" not in r.data.tags]


def children(data_dir: Path, parent_id: str, pipeline: str) -> dict[str, object]:
    c = store(data_dir)
    exp = c.get_experiment_by_name(pipeline)
    found = c.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    return {r.data.tags.get("model.kind", r.info.run_name): r for r in found}


def kill_when(data_dir: Path, pipeline: str, args: list[str], log: Path, ready, signum=None,
              timeout: float = 300) -> subprocess.Popen:  # fmt: skip
    """Start `seqflow` and send `signum` (SIGKILL) once `ready(checkpoint files)` holds."""
    proc = start(args, data_dir, log)
    try:
        wait_for(lambda: ready(checkpoints(data_dir, pipeline)), timeout, "checkpoint", proc)
    finally:
        proc.send_signal(signum or signal.SIGKILL)
        proc.wait(timeout=60)
    return proc


def assert_resumes_like_uninterrupted(tmp_path: Path, pipeline: str, args: list[str],
                                      ready, keys: list[str], kinds: list[str] = ()):  # fmt: skip
    """The whole check: uninterrupted run (its own data folder), then killed + re-run; the
    re-run's final metrics equal the uninterrupted run's (to 1e-4), the killed run is KILLED.
    `ready(checkpoint paths)` says when to kill; `kinds`: child runs whose metrics also
    match. Returns (reference parent run, resumed parent run)."""
    ref_dir, dir_ = tmp_path / "reference", tmp_path / "killed"
    assert run(args, ref_dir, tmp_path / "reference.log") == 0, (
        tmp_path / "reference.log"
    ).read_text()
    (reference,) = parent_runs(ref_dir, pipeline)

    proc = kill_when(dir_, pipeline, args, tmp_path / "killed.log", ready)
    assert proc.returncode == -signal.SIGKILL
    (killed,) = parent_runs(dir_, pipeline)
    assert killed.info.status == "RUNNING"  # it never got to say anything
    assert checkpoints(dir_, pipeline), "the kill left no checkpoint"

    assert run(args, dir_, tmp_path / "resumed.log") == 0, (tmp_path / "resumed.log").read_text()
    killed_now, resumed = parent_runs(dir_, pipeline)
    assert killed_now.info.run_id == killed.info.run_id
    assert killed_now.info.status == "KILLED"
    assert resumed.info.status == "FINISHED"
    assert "resuming after epoch" in (tmp_path / "resumed.log").read_text()
    for key in keys:
        assert resumed.data.metrics[key] == pytest.approx(reference.data.metrics[key], rel=1e-4,
                                                          abs=1e-6), key  # fmt: skip
    for kind in kinds:
        got = children(dir_, resumed.info.run_id, pipeline)[kind].data.metrics
        want = children(ref_dir, reference.info.run_id, pipeline)[kind].data.metrics
        for key in keys:
            if key in want:
                assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), (kind, key)
    return reference, resumed
