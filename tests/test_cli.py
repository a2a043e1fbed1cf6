"""The `seqflow` command, run as a user runs it (a subprocess against the test Prefect server)."""

import os
import re
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from tasks.engine.tracking import values

SLICE = [
    "--set",
    "data.limit_rows=800",
    "--set",
    "train.max_steps_per_epoch=2",
    "--set",
    "train.epochs=1",
    "--set",
    "vocab.min_count=2",
]


@pytest.fixture
def env(prefect_server, data_dir):
    from prefect.settings import PREFECT_API_URL

    out = dict(os.environ, SEQFLOW_DATA_DIR=str(data_dir), PREFECT_API_URL=PREFECT_API_URL.value())
    out.pop("MLFLOW_TRACKING_URI", None)
    return out


def run_id_of(stdout: str) -> str:
    """The MLflow run id in a run's summary (`MLflow run  NAME (ID)`)."""
    return re.search(r"^MLflow run  \S+ \((\w{32})\)$", stdout, re.M).group(1)


def seqflow(*args, env):
    cmd = [sys.executable, "-m", "flows.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def test_run_names_the_mlflow_run_in_its_summary(env, data_dir):
    done = seqflow("run", "word2vec", "--profile", "quick", *SLICE, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[-7].startswith("word2vec quick: FINISHED in ")
    assert lines[-6].startswith("MLflow run  word2vec-quick-")
    run_id = lines[-6].split("(")[-1].rstrip(")")
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    run = MlflowClient(tracking_uri=uri).get_run(run_id)
    assert run.data.params["train.max_steps_per_epoch"] == "2"
    assert values(run)["train_rows"] == 800


def test_bad_override_exits_2_before_any_work(env, data_dir):
    done = seqflow("run", "word2vec", "--set", "train.epochs=-3", env=env)
    assert done.returncode == 2
    assert "train.epochs" in done.stderr and "greater than or equal to 1" in done.stderr
    assert not (data_dir / "stages").exists()


def test_failed_run_exits_non_zero(env):
    done = seqflow(
        "run", "word2vec", "--profile", "quick", *SLICE, "--set", "vocab.min_count=100000", env=env
    )
    assert done.returncode == 1
    assert "word2vec failed" in done.stderr and "vocab.min_count" in done.stderr


def test_missing_mirror_is_named(env, tmp_path):
    done = seqflow("run", "word2vec", "--mirror", str(tmp_path / "nope"), env=env)
    assert done.returncode == 2 and "mirror folder" in done.stderr


def test_version_help_and_a_whole_unknown_key(capsys):
    from importlib.metadata import version

    from flows import cli

    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"seqflow {version('seqflow')}"
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    helped = capsys.readouterr().out
    assert "PIPELINE" in helped and "one of: word2vec, seq2seq" in helped
    assert "default: quick" in " ".join(helped.split())
    assert cli.main(["run", "word2vec", "--set", "no.such.key=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'no.such.key'" in err and "has no field 'no'" in err
