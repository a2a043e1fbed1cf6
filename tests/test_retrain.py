"""Retraining on new data: champion/challenger, no-op without new data, rollback."""

import csv
import json

import pytest
from mlflow.tracking import MlflowClient

from flows.cli import main as cli
from flows.config import load_config
from flows.retrain import retrain
from flows.word2vec import word2vec
from tasks.engine.tracking import values
from tests.conftest import MIRROR

SMOKE = ["data.limit_rows=1500", "train.max_steps_per_epoch=4", "train.epochs=2"]


def drop_tweets(data_dir, name, first, last, header=None, new=False):
    """Rows first..last of the real train.csv as a new incoming CSV. The retrain tests read the
    source's first rows only (data.limit_rows), so these rows are new to them; new=True makes
    them new to the whole source too (new ids, a word added to each tweet), as `seqflow
    ingest` checks against the whole source."""
    with open(MIRROR / "tweets_hate_speech" / "train.csv", encoding="utf-8", errors="replace") as f:
        rows = list(csv.reader(f))
    if new:
        rows[1:] = [
            [str(900_000 + int(i)), label, f"{tweet} fresh"] for i, label, tweet in rows[1:]
        ]
    folder = data_dir / "incoming" / "word2vec"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / name, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header or rows[0])
        w.writerows(rows[first:last])
    return folder / name


def champion(c):
    return int(c.get_model_version_by_alias("word2vec", "champion").version)


def test_retrain_cycle(prefect_server, data_dir, capsys):
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri, registry_uri=uri)

    first = word2vec(config=load_config("word2vec", "quick", SMOKE))
    assert champion(c) == 1  # the first trained model becomes champion
    runs_before = len(c.search_runs([c.get_experiment_by_name("word2vec").experiment_id]))

    # nothing new: no training, no new run
    out = retrain(profile="quick", overrides=SMOKE)
    assert out["decision"] == "no new data" and out["champion_version"] == 1
    exp_id = c.get_experiment_by_name("word2vec").experiment_id
    assert len(c.search_runs([exp_id])) == runs_before

    # new tweets arrive: a challenger is trained (warm-started, 5x the steps), judged on fixed
    # data, and beats the champion
    drop_tweets(data_dir, "batch-001.csv", 1501, 4501)
    more = [*SMOKE, "train.max_steps_per_epoch=20"]
    out = retrain(profile="quick", overrides=more, warm_start=True)
    assert out["challenger_version"] == 2 and out["champion_version"] == 1
    assert out["data_fingerprint"] != out["champion_data_fingerprint"]
    assert out["challenger_score"] > out["champion_score"]
    assert out["decision"] == "promoted" and champion(c) == 2
    r = c.get_run(out["challenger_run"])
    assert r.data.tags["retrain.decision"] == out["decision"]
    assert r.data.tags["data_fingerprint"] == out["data_fingerprint"]
    assert r.data.tags["incoming_files"] == "1"
    # rows 1501-4500 repeat some tweets of the first 1500 (same label and text): those are
    # dropped and counted, not trained on twice
    dups = values(r)["duplicate_rows"]
    assert 0 < dups < 300 and values(r)["train_rows"] == 4500 - dups
    assert values(r)["retrain.challenger_score"] == pytest.approx(out["challenger_score"])
    assert values(r)["retrain.champion_score"] == pytest.approx(out["champion_score"])
    assert r.data.tags["warm_start_from"] == "word2vec/1"
    assert 0 < values(r)["warm_start_tokens"] <= values(r)["vocab_size"]
    assert r.data.params["data.incoming"] == "True"

    # the same data again: no training whatever the last decision was
    runs_before = len(c.search_runs([exp_id]))
    assert retrain(profile="quick", overrides=more)["decision"] == "no new data"
    assert len(c.search_runs([exp_id])) == runs_before

    # rollback with one command; every move is recorded in the registry with scores and data
    assert cli(["promote", "word2vec", "--rollback"]) == 0
    assert champion(c) == 1
    moves = [json.loads(v) for k, v in sorted(c.get_registered_model("word2vec").tags.items())
             if k.startswith("champion_move.")]  # fmt: skip
    assert [(m["from"], m["to"], m["rollback"]) for m in moves] == [
        (None, 1, False), (1, 2, False), (2, 1, True)]  # fmt: skip
    promoted, rolled = moves[1], moves[2]
    assert promoted["metric"] == rolled["metric"] == "downstream_f1"
    assert promoted["to_score"] == pytest.approx(out["challenger_score"], abs=1e-5)
    assert promoted["from_score"] == pytest.approx(out["champion_score"], abs=1e-5)
    assert (rolled["from_score"], rolled["to_score"]) == (
        promoted["to_score"],
        promoted["from_score"],
    )
    assert promoted["from_data"] == out["champion_data_fingerprint"]
    assert promoted["to_data"] == out["data_fingerprint"] == rolled["from_data"]
    assert promoted["reason"].startswith("retrain: downstream_f1")
    capsys.readouterr()
    assert cli(["history", "word2vec"]) == 0
    history = capsys.readouterr().out.splitlines()
    assert len(history) == 5 and history[-1] == "champion now: version 1"
    assert "1 -> 2" in history[2] and f"{out['challenger_score']:.4f}" in history[2]
    assert out["data_fingerprint"][:12] in history[2] and "retrain" in history[2]
    assert "2 -> 1" in history[3] and "rollback" in history[3]
    # nothing older to roll back to; a version that does not exist is named
    assert cli(["promote", "word2vec", "--rollback"]) == 2
    assert cli(["promote", "word2vec", "--version", "99"]) == 2
    assert "cannot promote word2vec version 99" in capsys.readouterr().err
    assert champion(c) == 1 and first


def test_bad_incoming_file_is_named_and_nothing_changes(prefect_server, data_dir):
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    word2vec(config=load_config("word2vec", "quick", SMOKE))
    bad = drop_tweets(data_dir, "batch-002.csv", 1501, 1600, header=["id", "tweet"])
    with pytest.raises(Exception, match="batch-002.csv lacks column"):
        retrain(profile="quick", overrides=SMOKE)
    assert bad.exists()  # the file is kept for the user to fix
    assert champion(c) == 1
    versions = c.search_model_versions("name = 'word2vec'")
    assert len(versions) == 1
