"""SIGINT and SIGTERM mid-training, as a user sends them to `seqflow run`: a non-zero exit
(130 / 143), one line saying what was kept, the MLflow run KILLED (never left RUNNING), the
checkpoint of the last finished epoch kept, and the same command resuming from it."""

import signal

import pytest

from tasks.runtime import checkpoint
from tests.resume import checkpoints, kill_when, parent_runs, run

ARGS = ["run", "word2vec", "--profile", "quick", "--set", "train.epochs=40",
        "--set", "train.max_steps_per_epoch=20"]  # fmt: skip


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_training_kills_the_run_keeps_the_checkpoint_and_the_rerun_resumes(
    prefect_server, tmp_path, signum, code
):
    data = tmp_path / "data"
    log = tmp_path / "interrupted.log"
    proc = kill_when(data, "word2vec", ARGS, log, lambda found: found, signum)
    assert proc.returncode == code
    out = log.read_text()
    assert "Traceback" not in out
    (line,) = [ln for ln in out.splitlines() if ln.startswith("seqflow: word2vec stopped by")]
    assert signal.Signals(signum).name in line and "KILLED" in line and "resumes" in line

    (killed,) = parent_runs(data, "word2vec")
    assert killed.info.status == "KILLED"  # not RUNNING
    kept = checkpoints(data, "word2vec")  # the last finished epoch's and the one before
    assert len(kept) in (1, 2) and str(kept[-1]) in line  # the newest named
    done = checkpoint.load(kept[-1])["epoch"] + 1
    assert 1 <= done < 40  # it stopped mid-training

    assert run(ARGS, data, tmp_path / "resumed.log") == 0
    resumed_log = (tmp_path / "resumed.log").read_text()
    assert f"resuming after epoch {done} from {kept[-1]}" in resumed_log
    first, resumed = parent_runs(data, "word2vec")
    assert first.info.run_id == killed.info.run_id and first.info.status == "KILLED"
    assert resumed.info.status == "FINISHED"
    assert int(resumed.data.tags["resumed_from_epoch"]) == done
    assert resumed.data.tags["resumed_from_run"] == killed.info.run_id
