"""The first hour of a new user, through the `seqflow` command: every run ends with a summary
(UI link, primary metric, version, champion status), the champion policy decides which model
serves, runs can be told apart, and `config show` prints what a run will use."""

import json
import re

import pytest
from mlflow.tracking import MlflowClient

from tests.test_cli import env, run_id_of, seqflow  # noqa: F401  (env is a fixture)

SLICES = {
    "word2vec": ["data.limit_rows=800", "train.max_steps_per_epoch=2", "train.epochs=1",
                 "vocab.min_count=2"],
    "seq2seq": ["data.limit_train=600", "train.epochs=1", "train.max_steps_per_epoch=3",
                "evaluate.examples=2", "evaluate.max_len=10"],
    "charlm": ["windows.n_train=2048", "windows.n_test=512", "train.epochs=2", "train.hidden=16"],
    "fundamentals": ["train.numpy_rnn_epochs=2", "train.numpy_lstm_epochs=2",
                     "train.torch_epochs=2"],
    "airline": ["train.epochs=20"],
}  # fmt: skip
PRIMARY = {"word2vec": "downstream_f1", "seq2seq": "test_bleu", "charlm": "test_ppl",
           "fundamentals": "test_loss", "airline": "test_rmse"}  # fmt: skip


def sets(pipeline: str, *extra: str) -> list[str]:
    return [a for s in [*SLICES[pipeline], *extra] for a in ("--set", s)]


def store(data_dir) -> MlflowClient:
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def champion(c, name: str) -> int:
    return int(c.get_model_version_by_alias(name, "champion").version)


@pytest.mark.parametrize("pipeline", list(SLICES))
def test_every_run_ends_with_its_summary(env, data_dir, pipeline):  # noqa: F811
    done = seqflow("run", pipeline, *sets(pipeline), env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-6:]
    text = "\n".join(last)
    run_id = run_id_of(done.stdout)
    assert re.search(rf"UI +http://127\.0\.0\.1:\d+/#/experiments/\d+/runs/{run_id}", text)
    metrics = next(line for line in last if line.startswith("metrics"))
    assert metrics.split()[1].split(".")[0] == PRIMARY[pipeline]  # the primary metric leads
    assert "parity      not checked" in text and "stages      ran " in text
    c = store(data_dir)
    run = c.get_run(run_id)
    if pipeline == "fundamentals":  # trains toy models, registers none
        assert last[-1] == "model       none registered"
    else:
        assert re.fullmatch(
            rf"model +{pipeline} version 1 is now champion \(first model; {PRIMARY[pipeline]} "
            r"[-\d.e+]+\)",
            last[-1],
        ), last[-1]
        assert champion(c, pipeline) == 1
        mv = c.get_model_version(pipeline, "1")
        assert mv.tags["profile"] == "quick" and mv.tags["parity"] == "not checked"
        assert mv.tags["data_fingerprint"] == run.data.tags["data_fingerprint"]
        assert mv.tags["git_commit"] == run.data.tags["git_commit"] and mv.description
        history = c.get_registered_model(pipeline).description
        assert "champion history" in history and "| - | 1 |" in history
        # the Datasets panel: name, digest (the data fingerprint), source and schema
        (given,) = run.inputs.dataset_inputs
        ds = given.dataset
        assert ds.digest == run.data.tags["data_fingerprint"][:32] and ds.source_type == "http"
        assert json.loads(ds.source)["url"].startswith("http")
        assert set(json.loads(ds.schema)["mlflow_colspec"][0]) >= {"name", "type"}
    # runs a user can tell apart: name, command, overrides, source, description
    assert run.info.run_name.startswith(f"{pipeline}-quick-")
    assert run.data.tags["seqflow.command"].startswith(f"seqflow run {pipeline} --set ")
    changed = json.loads(run.data.tags["seqflow.overrides"])
    assert changed and set(changed) <= {s.split("=")[0] for s in SLICES[pipeline]}
    assert run.data.tags["mlflow.source.name"] == "seqflow"
    assert run.data.tags["mlflow.note.content"].startswith(f"# {pipeline} (quick)")
    assert "cache_hits" not in run.data.metrics and "count.cache_hits" in run.data.tags
    assert c.get_experiment_by_name(pipeline).tags["mlflow.note.content"]


def test_champion_policy_on_the_forecaster(env, data_dir):  # noqa: F811
    c = store(data_dir)
    first = seqflow("run", "airline", *sets("airline"), env=env)
    assert first.returncode == 0 and champion(c, "airline") == 1, first.stderr[-2000:]
    # the same command again: said to be identical, a tie does not move the champion
    again = seqflow("run", "airline", *sets("airline"), env=env)
    assert f"identical   to run {run_id_of(first.stdout)}" in again.stdout
    assert "version 2 registered; champion stays version 1 (test_rmse" in again.stdout
    # a parity run whose checks fail is registered, and never promoted
    parity = seqflow("run", "airline", "--profile", "parity", *sets("airline"), env=env)
    assert parity.returncode == 0, parity.stderr[-2000:]
    assert "PARITY FAILED:" in parity.stdout
    assert "version 3 registered; champion stays version 1 (its parity check failed" in (
        parity.stdout
    )
    assert c.get_model_version("airline", "3").tags["parity"] == "fail"
    # better, but --no-promote holds; --promote forces
    better = sets("airline", "train.epochs=200")
    held = seqflow("run", "airline", *better, "--no-promote", env=env)
    assert "version 4 registered; champion stays version 1 (--no-promote)" in held.stdout
    assert champion(c, "airline") == 1
    forced = seqflow("run", "airline", *sets("airline"), "--promote", env=env)
    assert "version 5 is now champion (forced by --promote)" in forced.stdout
    assert champion(c, "airline") == 5
    # a better quick run replaces a quick champion on the score of the same test data
    won = seqflow("run", "airline", *better, env=env)
    assert re.search(r"version 6 is now champion \(test_rmse [\d.]+ vs [\d.]+\)", won.stdout)
    mv5, mv6 = c.get_model_version("airline", "5"), c.get_model_version("airline", "6")
    assert float(mv6.tags["score.test_rmse"]) < float(mv5.tags["score.test_rmse"])
    history = c.get_registered_model("airline").description
    assert "forced by --promote" in history and "| 5 | 6 |" in history


def test_quick_never_replaces_a_best_champion_and_best_serves(env, data_dir):  # noqa: F811
    """The story of the issue: quick, then best, then translate answers with the best model."""
    c = store(data_dir)
    quick = seqflow("run", "seq2seq", *sets("seq2seq"), env=env)
    assert quick.returncode == 0 and champion(c, "seq2seq") == 1, quick.stderr[-2000:]
    best = ["data.limit_train=2000", "train.epochs=4", "train.emb_dim=32", "train.hid_dim=64",
            "train.n_layers=1", "train.heads=2", "train.warmup=50", "train.average_last=2",
            "evaluate.examples=2", "evaluate.max_len=12", "evaluate.beam=1"]  # fmt: skip
    done = seqflow("run", "seq2seq", "--profile", "best",
                   *[a for s in best for a in ("--set", s)], env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"version 2 is now champion \(test_bleu [\d.]+ vs [\d.]+\)", done.stdout)
    assert champion(c, "seq2seq") == 2
    said = seqflow("translate", "Ein Mann fährt Fahrrad.", env=env)
    assert said.returncode == 0 and said.stdout.strip(), said.stderr[-2000:]
    assert "(seq2seq version 2)" in said.stderr
    assert "\x1b[" not in said.stdout  # no library warnings or colour codes on stdout
    # a quick run afterwards never replaces the best champion automatically
    again = seqflow("run", "seq2seq", *sets("seq2seq", "train.max_steps_per_epoch=4"), env=env)
    assert "champion stays version 2 (a quick run never replaces a best champion)" in (again.stdout)
    assert champion(c, "seq2seq") == 2


@pytest.mark.parametrize("pipeline", list(SLICES))
def test_config_show_prints_the_resolved_config(pipeline, capsys):
    from flows import cli
    from flows.config import flatten, load_config

    assert cli.main(["config", "show", pipeline, "--set", "train.seed=7"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"# {pipeline}, profile quick (default profile: quick)"
    shown = {line.split(" = ")[0]: line for line in out[1:]}
    config = flatten(load_config(pipeline, "quick", ["train.seed=7"]))
    assert set(shown) == set(config)
    assert shown["train.seed"].startswith("train.seed = 7")
    assert "  # " in shown["train.nproc"] and "DDP" in shown["train.nproc"]  # its description


def test_cli_manners(env, capsys):  # noqa: F811
    from flows import cli

    bad = seqflow("run", "airline", "--set", "train.epochs=0", env=env)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "train.epochs = 0: Input should be greater than or equal to 1" in bad.stderr
    zero = seqflow("run", "charlm", "--nproc", "0", env=env)
    assert zero.returncode == 2 and "--nproc 0" in zero.stderr
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    helped = " ".join(capsys.readouterr().out.split())
    assert "default: quick" in helped and "seq2seq: parity | quick | attention | best" in helped
