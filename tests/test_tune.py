"""`seqflow tune` (flows/tune.py): a real Optuna study on the airline forecaster, each trial in
its own process, as MLflow child runs: pruning, failed trials, the profile file, a killed study
resumed, parallel trials, space errors before any trial, and trials that never read a test
split."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from flows import cli
from tests.conftest import REPO

pytestmark = pytest.mark.usefixtures("prefect_server")

SHORT = ["--set", "train.epochs=12", "--set", "train.eval_every=3"]


def client(data_dir: Path) -> MlflowClient:
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def study_runs(data_dir: Path, pipeline: str = "airline") -> tuple[object, list]:
    c = client(data_dir)
    exp = c.get_experiment_by_name(f"{pipeline}-tune")
    runs = c.search_runs([exp.experiment_id], max_results=500)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return parent, [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]


def the_study(data_dir: Path):
    storage = f"sqlite:///{data_dir / 'optuna.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage)


def test_a_study_prunes_records_failures_and_writes_a_profile_that_runs(tmp_path, data_dir,
                                                                         capsys):  # fmt: skip
    space = tmp_path / "space.yaml"  # lookback 1000 cannot window 144 months: a failed trial
    space.write_text("train.lr: {low: 1.0e-7, high: 0.05, log: true}\n"
                     "windows.lookback: [24, 1000]\n")  # fmt: skip
    code = cli.main(["tune", "airline", "--profile", "best", "--trials", "6", "--space",
                     str(space), "--prune-after", "1", *SHORT])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    parent, children = study_runs(data_dir)
    assert parent.info.status == "FINISHED" and len(children) == 6
    state = {r.data.tags["optuna.trial"]: r.data.tags.get("trial.state") for r in children}
    by_state = {s: sorted(n for n, v in state.items() if v == s) for s in set(state.values())}
    # the seeded sampler (optuna pinned in constraints.txt) gives this study every outcome
    assert set(by_state) == {"complete", "pruned", "failed"}, by_state
    c = client(data_dir)
    runs = {r.data.tags["optuna.trial"]: r for r in children}
    for n in by_state["failed"]:
        assert runs[n].info.status == "FAILED"
        assert "SeriesError" in runs[n].data.tags["failure_reason"]
        assert runs[n].data.params["windows.lookback"] == "1000"
    # a pruned trial logged fewer validation epochs than a complete one
    evals = {n: len(c.get_metric_history(r.info.run_id, "val_rmse")) for n, r in runs.items()}
    pruned, complete = by_state["pruned"][0], by_state["complete"][0]
    assert evals[pruned] < evals[complete] == 5  # epochs 1, 4, 7, 10, 12
    assert runs[pruned].data.tags["trial.pruned_at_epoch"]
    # trial 0 is the profile's own point
    assert runs["0"].data.params["train.lr"] == "0.001"
    assert runs["0"].data.params["windows.lookback"] == "24"
    # the parent: best value and params, both plots, the profile file, the final test score
    study = the_study(data_dir)
    best = study.best_trial
    assert parent.data.metrics["best_val_rmse"] == pytest.approx(best.value)
    assert parent.data.tags["best.train.lr"] == str(best.params["train.lr"])
    assert parent.data.metrics["trials_complete"] == len(by_state["complete"])
    arts = {a.path for a in c.list_artifacts(parent.info.run_id)}
    assert {"parallel_coordinates.png", "optimization_history.png", "profile.json"} <= arts
    profile = json.loads(Path(parent.data.tags["profile_file"]).read_text())
    assert profile["set"]["train.lr"] == best.params["train.lr"]
    assert profile["set"]["train.epochs"] == 12  # the study's --set, kept
    final = c.get_run(parent.data.tags["final_run"])
    assert float(final.data.params["train.lr"]) == pytest.approx(best.params["train.lr"])
    assert parent.data.metrics["best_trial_test_rmse"] == final.data.metrics["test_rmse"]
    assert "test_rmse" not in "".join(str(r.data.metrics) for r in children)  # test: once
    assert f"best        trial {best.number}" in out and "--profile-file" in out
    # `seqflow run --profile-file` reads the same settings
    args = cli.parser().parse_args(["run", "airline", "--profile-file", profile_path(parent)])
    config = cli._config(args)
    assert config.profile == "best" and config.train.lr == best.params["train.lr"]


def profile_path(parent) -> str:
    return parent.data.tags["profile_file"]


@pytest.mark.parametrize(
    ("space", "named"),
    [
        ("train.hiddn: [8, 16]\n", "train.hiddn"),
        ("train.lr: {low: 0.1, high: 0.001}\n", "low 0.1 must be below high 0.001"),
        ("train.hidden: []\n", "train.hidden: an empty choice list"),
        ("train.dropout: {low: 0.0, high: 1.5}\n", "train.dropout = 1.5"),
    ],
)
def test_a_bad_space_file_is_refused_before_any_trial(tmp_path, data_dir, capsys, space, named):
    path = tmp_path / "space.yaml"
    path.write_text(space)
    code = cli.main(["tune", "airline", "--trials", "2", "--space", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and named in err and str(path) in err
    assert not (data_dir / "optuna.db").exists() and not (data_dir / "mlflow.db").exists()


def test_a_killed_study_resumes_without_training_a_finished_trial_again(tmp_path, data_dir,
                                                                        capsys):  # fmt: skip
    args = ["tune", "airline", "--profile", "best", "--trials", "4", "--pruner", "none",
            "--no-final", "--set", "train.epochs=60", "--set", "train.eval_every=10"]  # fmt: skip
    env = os.environ | {"SEQFLOW_DATA_DIR": str(data_dir), "PREFECT_API_URL": ""}
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen([sys.executable, "-m", "flows.cli", *args], cwd=REPO, env=env,
                             stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)  # fmt: skip
    storage = f"sqlite:///{data_dir / 'optuna.db'}"
    deadline, done = time.time() + 300, []
    try:
        while time.time() < deadline and first.poll() is None:
            time.sleep(1)
            try:
                (s,) = optuna.get_all_study_summaries(storage)
                trials = optuna.load_study(study_name=s.study_name, storage=storage).trials
            except (ValueError, Exception):  # not created yet
                continue
            done = [t.number for t in trials if t.state.name == "COMPLETE"]
            training = [t for t in trials if t.state.name == "RUNNING"
                        and "mlflow_run" in t.user_attrs]  # fmt: skip
            if len(done) >= 2 and training:  # the third trial is training
                break
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the study and its trial process, mid-trial
        first.wait()
    assert len(done) >= 2, (tmp_path / "first.log").read_text()[-3000:]
    code = cli.main([*args, "--resume"])
    assert code == 0, capsys.readouterr().err
    study = the_study(data_dir)
    interrupted = [t for t in study.trials if t.user_attrs.get("interrupted")]
    assert len(interrupted) == 1
    retry = [t for t in study.trials if t.user_attrs.get("retry_of") == interrupted[0].number]
    assert len(retry) == 1 and retry[0].params == interrupted[0].params
    assert retry[0].state.name == "COMPLETE"
    counted = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(counted) == 4
    parent, children = study_runs(data_dir)
    per_trial = {}
    for r in children:
        per_trial.setdefault(r.data.tags["optuna.trial"], []).append(r)
    for n in done:  # each finished trial trained once, in the first process
        assert len(per_trial[str(n)]) == 1 and per_trial[str(n)][0].info.status == "FINISHED"
    (killed,) = per_trial[str(interrupted[0].number)]
    assert killed.info.status == "KILLED"
    assert parent.info.status == "FINISHED"


def test_parallel_trials_run_side_by_side_in_their_own_processes(data_dir, capsys):
    code = cli.main(["tune", "airline", "--trials", "2", "--parallel", "2", "--no-final",
                     "--set", "train.epochs=30", "--set", "train.eval_every=10"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    study = the_study(data_dir)
    pids = {t.user_attrs["pid"] for t in study.trials}
    assert len(pids) == 2 and os.getpid() not in pids
    _, children = study_runs(data_dir)
    a, b = sorted(children, key=lambda r: r.info.start_time)
    assert b.info.start_time < a.info.end_time  # they overlapped


def test_a_trial_never_reads_a_test_split(data_dir, monkeypatch):
    """The pipelines' trials read the training windows only (spies on the split readers)."""
    import flows.airline
    import flows.charlm
    import flows.fundamentals
    import flows.seq2seq
    import flows.word2vec
    import tasks.evaluation
    import tasks.train.airline
    import tasks.train.seq2seq
    from flows.config import load_config
    from tasks.engine import tracking

    read = []

    def spy(module, name, pipeline):
        real = getattr(module, name)

        def reader(stage, split="next"):
            read.append((pipeline, split))
            return real(stage, split) if split != "next" else real(stage)

        monkeypatch.setattr(module, name, reader)

    def never(*args, **kwargs):
        raise AssertionError("a trial scored the downstream classifier's test rows")

    monkeypatch.setattr(tasks.evaluation, "downstream_classifier", never)
    spy(flows.charlm, "read_split", "charlm")
    encode = flows.fundamentals.one_hot_pairs
    monkeypatch.setattr(flows.fundamentals, "one_hot_pairs",
                        lambda parts, w: read.extend(("fundamentals", k) for k in parts)
                        or encode(parts, w))  # fmt: skip
    spy(tasks.train.seq2seq, "read_split", "seq2seq")
    spy(tasks.train.airline, "read_windows", "airline")
    spy(tasks.train.airline, "read_next", "airline")
    seen = []
    cases = [
        (flows.word2vec, ["train.epochs=2"]),
        (flows.seq2seq, ["train.epochs=1"]),
        (flows.charlm, ["train.epochs=2"]),
        (flows.airline, ["train.epochs=4", "train.eval_every=2"]),
        (flows.fundamentals, ['train.kinds=["torch_lstm"]', "train.torch_epochs=3"]),
    ]
    for module, sets in cases:
        config = load_config(module.PIPELINE, "quick", sets)
        run_id = tracking.start_run("tune-test", {}, {}, "trial")
        rows = []
        value = module.tune_trial(config, run_id, lambda epoch, row, r=rows: r.append((epoch, row)))
        last = rows[-1][1][module.TUNE_METRIC[0]]
        if module is flows.fundamentals:  # its epochs' val_loss is taken before the updates
            assert 0 < value < last
        elif module is flows.seq2seq:  # epochs: a part of the validation split; value: all
            assert 0 <= value <= 1 and 0 <= last <= 1
        else:
            assert value == last
        seen.append((module.PIPELINE, rows))
    assert {s for p, s in read if p in ("charlm", "airline")} == {"train"}, read
    assert {s for p, s in read if p == "seq2seq"} == {"train", "valid"}, read
    assert {s for p, s in read if p == "fundamentals"} == {"train", "val"}, read
    assert [e for e, _ in seen[0][1]] == [0, 1]  # word2vec: val_f1 every epoch
    assert [e for e, _ in seen[2][1]] == [0, 1]  # charlm: val_ppl every epoch
    assert not any(k.startswith("test_") for _, rows in seen for _, row in rows for k in row)


def test_trials_run_on_a_dask_cluster(data_dir, capsys):
    args = ["--no-final", "--set", "train.epochs=20", "--set", "train.eval_every=5"]
    code = cli.main(["tune", "airline", "--trials", "2", "--parallel", "2", "--runner", "dask",
                     *args])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    study = the_study(data_dir)
    assert [t.state.name in ("COMPLETE", "PRUNED") for t in study.trials] == [True, True]
    assert len({t.user_attrs["pid"] for t in study.trials}) == 2
    _, children = study_runs(data_dir)
    assert {r.data.tags["trial.state"] for r in children} <= {"complete", "pruned"}
    assert len(children) == 2
