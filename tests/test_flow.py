"""The word2vec flow on a slice, with a real Prefect server and a real MLflow SQLite store."""

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from flows.cli import main as cli
from flows.config import load_config
from flows.word2vec import word2vec
from tasks.engine.tracking import values

SMOKE = ["data.limit_rows=1500", "train.max_steps_per_epoch=3", "train.epochs=2"]


@pytest.fixture
def mlflow_client(data_dir):
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    return lambda: MlflowClient(tracking_uri=uri, registry_uri=uri)


def run(overrides=()):
    return word2vec(config=load_config("word2vec", "quick", SMOKE + list(overrides)))


def test_flow_logs_params_metrics_artifacts_and_registers(prefect_server, mlflow_client, data_dir):
    run_id = run()
    c = mlflow_client()
    r = c.get_run(run_id)
    assert r.info.status == "FINISHED"
    exp = c.get_experiment(r.info.experiment_id)
    assert exp.name == "word2vec" and exp.artifact_location.startswith((data_dir).as_uri())

    p = r.data.params
    assert p["profile"] == "quick" and p["data.limit_rows"] == "1500"
    assert p["train.embed_size"] == "50" and p["tokenize.stemmer"] == "snowball"
    t = r.data.tags
    assert t["pipeline"] == "word2vec" and t["profile"] == "quick"
    assert len(t["data_fingerprint"]) == 64 and t["git_commit"]
    assert len(t["rows_fingerprint"]) == 64
    assert t["prefect_flow_run_id"] not in ("", "none")

    m = values(r)
    assert m["train_rows"] == 1500 and m["decode_errors"] == 2  # counted over the file
    assert m["vocab_size"] > 100 and m["pairs"] > 10000
    assert m["cache_hits"] == 0
    assert m["pairs_per_sec"] > 0 and 0 <= m["downstream_f1"] <= 1
    history = c.get_metric_history(run_id, "train_loss")
    assert [h.step for h in history] == [0, 1]
    assert m["final_train_loss"] == history[-1].value

    artifacts = {a.path for a in c.list_artifacts(run_id)}
    assert {"vocab.json", "neighbors.json", "loss.png"} <= artifacts
    vocab = json.load(open(c.download_artifacts(run_id, "vocab.json", str(data_dir))))
    assert vocab[:2] == ["@user", "father"] and len(vocab) == m["vocab_size"]
    neighbours = json.load(open(c.download_artifacts(run_id, "neighbors.json", str(data_dir))))
    assert set(neighbours) <= {"good", "bad", "school", "day"} and "day" in neighbours
    assert all(len(v) == 10 for v in neighbours.values())

    versions = c.search_model_versions("name='word2vec'")
    assert [v.run_id for v in versions] == [run_id]


PREP = ("ingest", "tokenize", "vocab", "drop_rare", "windows")


def explain(capsys, *args) -> list[str]:
    capsys.readouterr()
    assert cli(["explain", "word2vec", *args]) == 0
    return [line.strip() for line in capsys.readouterr().out.splitlines()[1:]]


def test_tokenizer_change_recomputes_and_explain_says_why(prefect_server, mlflow_client, capsys):
    first = run()
    c = mlflow_client()
    assert values(c.get_run(first))["cache_hits"] == 0
    lines = explain(capsys)
    assert [line.split()[0:2] for line in lines] == [[s, "ran:"] for s in (*PREP, "train")]
    assert all(line.endswith("first run of this stage") for line in lines)

    second = run(["tokenize.stemmer=none"])
    tags = c.get_run(second).data.tags
    assert tags["stage.ingest.cached"] == "True"
    assert all(tags[f"stage.{s}.cached"] == "False" for s in PREP[1:])
    assert values(c.get_run(second))["cache_hits"] == 1
    lines = explain(capsys)
    assert lines[0].startswith("ingest cached")
    assert lines[1].startswith(
        "tokenize ran: parameter tokenize.stemmer changed (snowball -> none)"
    )
    assert lines[2].startswith("vocab ran: input tokens changed (vs run")
    assert lines[3].startswith("drop_rare ran: input tokens changed; input vocab changed")
    assert lines[4].startswith("windows ran: input ids changed")
    assert lines[5].startswith("train ran: input pairs changed; input vocab changed")
    first_lines = explain(capsys, "--run", first)
    assert first_lines == [f"{s} ran: first run of this stage" for s in (*PREP, "train")]

    third = run(["tokenize.stemmer=none"])
    assert values(c.get_run(third))["cache_hits"] == 5
    *prep, train = explain(capsys)
    assert [line.split()[:2] for line in prep] == [[s, "cached"] for s in PREP]
    assert train.startswith("train ran: it always runs; nothing it depends on changed since run")
    lineage = json.loads((Path(c.download_artifacts(third, "lineage.json"))).read_text())
    tokenize = next(s for s in lineage["stages"] if s["stage"] == "tokenize")
    assert tokenize["parts"]["params"]["stemmer"] == "none"
    assert {"tasks/text.py", "tasks/engine/stage.py"} <= set(tokenize["parts"]["code"])
    assert set(tokenize["parts"]["libs"]) == {"nltk", "pyarrow"}


def test_failed_run_is_marked_failed_with_the_reason(prefect_server, mlflow_client):
    with pytest.raises(Exception, match="no token occurs at least 100000 times"):
        run(["vocab.min_count=100000"])
    runs = mlflow_client().search_runs(
        [mlflow_client().get_experiment_by_name("word2vec").experiment_id]
    )
    assert runs[0].info.status == "FAILED"
    assert "vocab.min_count" in runs[0].data.tags["failure_reason"]
