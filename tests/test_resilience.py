"""Numerical faults, crash and resume, concurrency, transient failures: real Prefect, real
MLflow (SQLite, and a real `mlflow server` that is killed), real Parquet, real training."""

import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from flows import cli
from flows.config import load_config
from flows.recover import ModelNotLogged
from flows.word2vec import word2vec
from tasks.engine.stage import StageOutput, _verify, read_manifest, remove_stale_temps, run_stage
from tasks.runtime import checkpoint
from tasks.runtime.faults import NonFiniteLoss
from tests.resume import environment
from tests.servers import Stack
from tests.test_cli import run_id_of

QUICK = ["--profile", "quick"]
TINY = ["data.limit_rows=800", "vocab.min_count=2", "train.epochs=1",
        "train.max_steps_per_epoch=2"]  # fmt: skip


def sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def store(data_dir: Path) -> MlflowClient:
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def runs(client: MlflowClient) -> list:
    return client.search_runs([client.get_experiment_by_name("word2vec").experiment_id])


def stage_output(data_dir: Path, stage: str) -> StageOutput:
    """The one output of a word2vec stage in the data folder, as the flow hands it on."""
    (folder,) = (data_dir / "stages" / "word2vec" / stage).iterdir()
    m = read_manifest(folder)
    return StageOutput(stage, str(folder), m["key"], m["fingerprint"], True, m["stats"])


def checkpoints(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "checkpoints" / "word2vec").glob("*/epoch-*.pt"))


@pytest.fixture
def env(prefect_server, data_dir):
    return environment(data_dir)


def seqflow(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    """`seqflow ...` as a user runs it, output to a file (a pipe could fill and block it)."""
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "flows.cli", *args], env=env,
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise TimeoutError(f"no {what} within {timeout:.0f} s")


# -- numerical faults -------------------------------------------------------------------------


def test_nan_loss_stops_at_once_marks_the_run_failed_and_keeps_the_last_good_checkpoint(
    prefect_server, data_dir
):
    # Adam moves every weight by ~lr a step: at 8e16 the logits overflow after the first epoch
    overrides = [*TINY, "train.epochs=3", "train.max_steps_per_epoch=3", "train.weight_decay=0",
                 "train.lr=8e16"]  # fmt: skip
    with pytest.raises(NonFiniteLoss, match=r"training loss became (inf|nan) at epoch") as caught:
        word2vec(config=load_config("word2vec", "quick", overrides))
    epoch, step = caught.value.epoch, caught.value.step
    assert epoch >= 2 and f"at epoch {epoch}, step {step}" in str(caught.value)
    kept = checkpoints(data_dir)  # the last good epoch's (and the one before), no later one
    assert [p.name for p in kept] == [f"epoch-{e:04d}.pt" for e in range(max(epoch - 2, 1), epoch)]
    assert str(kept[-1]) in str(caught.value)
    state = checkpoint.load(kept[-1])  # weights-only
    assert state["epoch"] == epoch - 2 and all(
        torch.isfinite(t).all() for t in state["model"].values()
    )
    (run,) = runs(store(data_dir))
    assert run.info.status == "FAILED"
    reason = run.data.tags["failure_reason"]
    assert reason.startswith("NonFiniteLoss") and f"at epoch {epoch}, step {step}" in reason


# -- crash and resume -------------------------------------------------------------------------


def test_killed_run_resumes_from_its_checkpoint_and_ends_like_an_uninterrupted_run(
    env, data_dir, tmp_path, capsys
):
    overrides = ["train.epochs=4", "train.max_steps_per_epoch=30"]
    args = ["run", "word2vec", *QUICK, *sets(overrides)]
    proc = seqflow(args, env, tmp_path / "killed.log")
    try:
        first = wait_for(lambda: checkpoints(data_dir), 240, "first checkpoint")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert first[0].name == "epoch-0001.pt" and checkpoints(data_dir)[-1].name != "epoch-0004.pt"
    (killed,) = runs(store(data_dir))
    assert killed.info.status == "RUNNING"  # it never got to say anything

    assert cli.main(args) == 0  # the same command again
    run_id = run_id_of(capsys.readouterr().out)
    resumed = store(data_dir).get_run(run_id)
    assert resumed.info.status == "FINISHED"
    assert 1 <= int(resumed.data.tags["resumed_from_epoch"]) <= 3
    assert resumed.data.tags["resumed_from_run"] == killed.info.run_id
    killed = store(data_dir).get_run(killed.info.run_id)  # closed by the run that resumed it
    assert killed.info.status == "KILLED" and run_id in killed.data.tags["failure_reason"]
    assert checkpoints(data_dir) == []  # logged and registered: the checkpoints are gone

    # the same training, uninterrupted, on the same stage outputs
    from tasks.train.word2vec import train_word2vec
    from tasks.vocab import read_vocab
    from tasks.windows import read_pairs

    pairs = read_pairs(stage_output(data_dir, "windows"))
    _, counts = read_vocab(stage_output(data_dir, "vocab"))
    cfg = load_config("word2vec", "quick", overrides).train
    reference = train_word2vec(pairs, counts, cfg)[1].train_loss
    history = store(data_dir).get_metric_history(run_id, "train_loss")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == [0, 1, 2, 3]
    logged = [m.value for m in sorted(history, key=lambda m: m.step)]
    assert logged == pytest.approx(reference, rel=1e-4)
    assert resumed.data.metrics["final_train_loss"] == pytest.approx(reference[-1], rel=1e-4)


class Crash(Exception):
    pass


@pytest.mark.parametrize("kernel", ["torch", "numba", "c"])
def test_resumed_training_matches_uninterrupted_training(tmp_path, kernel, request):
    """Model, optimizer, the recipe's generators and the RNG states come back from the
    checkpoint (weights-only): the resumed run ends bit-equal to the uninterrupted one."""
    from tasks.runtime.loop import Plan
    from tasks.runtime.trainer import fit
    from tasks.train.word2vec import make_recipe, train_word2vec
    from tests.test_training import toy_pairs

    pairs, counts = toy_pairs(n=4000)
    extra = {"model": "sgns", "kernel": kernel, "embed_size": 8, "subsample": 1e-3}
    cfg = load_config("word2vec", "parity").train.model_copy(
        update={"epochs": 3, "batch_size": 256, **extra}
    )
    if kernel == "numba":  # its threads race on purpose (hogwild): one thread for equality
        import numba

        threads = numba.get_num_threads()
        numba.set_num_threads(1)
        request.addfinalizer(lambda: numba.set_num_threads(threads))
    if kernel == "c":  # the same, with torch's thread count (the C kernel's team)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        request.addfinalizer(lambda: torch.set_num_threads(threads))
    whole, whole_fitted = train_word2vec(pairs, counts, cfg)

    crashing = make_recipe(pairs, counts, cfg)
    start_epoch = crashing.start_epoch

    def crash_in_the_second_epoch(epoch):
        if epoch == 1:
            raise Crash
        start_epoch(epoch)

    crashing.start_epoch = crash_in_the_second_epoch
    with pytest.raises(Crash):
        fit(crashing, Plan.of(cfg), checkpoints=tmp_path)
    assert [p.name for p in tmp_path.glob("epoch-*.pt")] == ["epoch-0001.pt"]
    resumed, resumed_fitted = train_word2vec(pairs, counts, cfg, checkpoints=tmp_path)
    assert resumed_fitted.resumed_epochs == 1
    assert resumed_fitted.train_loss == whole_fitted.train_loss
    assert resumed_fitted.items == whole_fitted.items
    for k, v in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[k], v)


def test_killed_stage_build_leaves_nothing_trusted_and_the_next_run_rebuilds(tmp_path):
    script = (
        "import sys, time, tasks.engine.settings as m\n"
        "from tasks.engine.stage import run_stage\n"
        "def build(out):\n"
        "    (out / 'rows.parquet').write_bytes(b'half a file')\n"
        "    time.sleep(120)\n"
        "run_stage('pipe', 'slow', inputs={'x': 'f'}, params={}, code=(m,), build=build,"
        f" root=__import__('pathlib').Path({str(tmp_path)!r}))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parent.parent)
    base = tmp_path / "stages" / "pipe" / "slow"
    try:
        half = wait_for(lambda: list(base.glob(".tmp-*/rows.parquet")), 60, "partial output")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    orphan = half[0].parent
    assert [p.name for p in base.iterdir()] == [orphan.name]  # no folder a run would trust

    import tasks.engine.settings as m

    calls = []

    def build(out):
        calls.append(out)
        (out / "rows.parquet").write_bytes(b"all of it")
        return {"rows": 1}

    out = run_stage("pipe", "slow", inputs={"x": "f"}, params={}, code=(m,), build=build,
                    root=tmp_path)  # fmt: skip
    assert calls and not out.cached and out.file("rows.parquet").read_bytes() == b"all of it"
    assert _verify(Path(out.path)) is not None and orphan.exists()  # too young to be sure
    old = time.time() - 7 * 3600
    os.utime(orphan, (old, old))
    assert remove_stale_temps(base) == 1 and not orphan.exists()


# -- concurrency ------------------------------------------------------------------------------


def test_two_runs_at_once_on_one_cache_and_store_both_finish(env, data_dir, tmp_path):
    args = ["run", "word2vec", *QUICK, *sets(TINY)]
    procs = [seqflow(args, env, tmp_path / f"run{i}.log") for i in range(2)]
    for i, proc in enumerate(procs):
        proc.wait(timeout=300)
        assert proc.returncode == 0, (tmp_path / f"run{i}.log").read_text()[-3000:]
    client = store(data_dir)
    finished = runs(client)
    assert len(finished) == 2 and {r.info.status for r in finished} == {"FINISHED"}
    versions = client.search_model_versions("name = 'word2vec'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    stages = [f for f in (data_dir / "stages" / "word2vec").glob("*/*") if f.is_dir()]
    assert stages and all(_verify(f) is not None for f in stages)
    assert len(stages) == len({f.parent for f in stages})  # one output per stage
    assert not list((data_dir / "stages").rglob(".tmp-*"))


# -- transient failures -----------------------------------------------------------------------


def test_mlflow_server_gone_keeps_the_model_and_log_model_logs_it_later(
    prefect_server, data_dir, tmp_path, monkeypatch, capsys
):
    root = tmp_path / "servers"
    root.mkdir()
    stack = Stack(root)
    try:
        url = stack.mlflow(f"sqlite:///{root / 'mlflow.db'}")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # fail in seconds, not minutes
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
        server = stack.procs[-1]

        def kill_when_trained():  # the last epoch's checkpoint: before evaluate and register
            wait_for(lambda: list(data_dir.glob("checkpoints/word2vec/*/epoch-0002.pt")), 240,
                     "last checkpoint")  # fmt: skip
            os.killpg(server.pid, signal.SIGKILL)

        killer = threading.Thread(target=kill_when_trained, daemon=True)
        killer.start()
        overrides = [*TINY, "train.epochs=2"]
        with pytest.raises(ModelNotLogged, match="log-model word2vec --checkpoint") as caught:
            word2vec(config=load_config("word2vec", "quick", overrides))
        killer.join(timeout=5)
    finally:
        stack.stop()
    message = str(caught.value)
    assert url in message  # says which MLflow it could not reach
    path = message.split("--checkpoint ")[-1].strip()
    assert Path(path).is_file() and Path(path).name == "epoch-0002.pt"

    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # a live store: the data folder's SQLite
    assert cli.main(["log-model", "word2vec", "--checkpoint", path]) == 0
    assert "model word2vec version 1" in capsys.readouterr().out
    client = store(data_dir)
    version = client.get_model_version("word2vec", "1")
    run = client.get_run(version.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["recovered_epochs"] == "2"
    assert math.isfinite(run.data.metrics["final_train_loss"])
    import mlflow.pytorch

    mlflow.set_tracking_uri(f"sqlite:///{data_dir / 'mlflow.db'}")
    model = mlflow.pytorch.load_model("models:/word2vec/1", map_location="cpu")
    saved = checkpoint.load(Path(path))["model"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())


def test_log_model_refuses_what_is_not_a_word2vec_checkpoint(tmp_path, data_dir, capsys):
    torn = tmp_path / "epoch-0002.pt"
    torn.write_bytes(b"PK\x03\x04 half a zip")  # what a torn write would leave
    for pipeline, path in [("word2vec", tmp_path / "missing.pt"), ("word2vec", torn),
                           ("seq2seq", torn)]:  # fmt: skip
        assert cli.main(["log-model", pipeline, "--checkpoint", str(path)]) == 2
    err = capsys.readouterr().err
    assert "missing.pt is not a readable seqflow checkpoint" in err
    assert "epoch-0002.pt is not a readable" in err and "word2vec checkpoints only" in err
    assert not (data_dir / "mlflow.db").exists()  # refused before touching the store
