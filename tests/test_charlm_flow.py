"""The charlm flow on a slice: eight child runs under one parent, real test perplexity."""

import math

from mlflow.tracking import MlflowClient

from flows.charlm import charlm
from models.charlm import KINDS

SMOKE = ["windows.n_train=2048", "windows.n_test=512", "train.epochs=3", "train.hidden=16"]


def test_charlm_flow_children_metrics_artifacts(prefect_server, data_dir):
    parent = charlm(profile="quick", overrides=SMOKE)
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    p = c.get_run(parent)
    assert p.info.status == "FINISHED" and p.data.metrics["vocab_size"] == 34
    exp = p.info.experiment_id
    children = c.search_runs([exp], f"tags.mlflow.parentRunId = '{parent}'")
    assert sorted(r.data.params["model.kind"] for r in children) == sorted(KINDS)
    for r in children:
        kind = r.data.params["model.kind"]
        hist = c.get_metric_history(r.info.run_id, "test_ppl")
        per_epoch = [h.value for h in hist if h.step < 3]
        assert len(per_epoch) == 3 and all(math.isfinite(v) for v in per_epoch)
        assert per_epoch[-1] < per_epoch[0], kind  # a few epochs lower the test perplexity
        assert r.data.metrics["chars_per_sec"] > 0
    bidir = next(r for r in children if r.data.params["model.kind"] == "lstm_bidir")
    assert "not a next-character model" in bidir.data.tags["mlflow.note.content"]
    artifacts = {a.path for a in c.list_artifacts(parent)}
    assert {"vocab.json", "samples.md", "perplexity.png"} <= artifacts
    champion = c.get_model_version_by_alias("charlm", "champion")
    assert champion.run_id != bidir.info.run_id
    best = c.get_run(champion.run_id)
    assert best.data.metrics["test_ppl"] == min(
        r.data.metrics["test_ppl"] for r in children if r.info.run_id != bidir.info.run_id
    )


def test_charlm_retrain_on_new_text(prefect_server, data_dir):
    """Retrain finds the champion through its child run, skips when nothing is new, and
    judges a challenger trained with an incoming text on the book's own test windows."""
    from flows.retrain import retrain

    small = ["windows.n_train=1024", "windows.n_test=256", "train.epochs=1",
             "train.hidden=16", 'train.kinds=["gru"]']  # fmt: skip
    first = retrain(pipeline="charlm", profile="quick", overrides=small)
    assert first["decision"] == "first model: champion"
    assert retrain(pipeline="charlm", profile="quick", overrides=small)["decision"] == "no new data"

    folder = data_dir / "incoming" / "charlm"
    folder.mkdir(parents=True)
    (folder / "capitulo.txt").write_text("En un lugar de la Mancha, de cuyo nombre no quiero "
                                         "acordarme, vivía un hidalgo.\n" * 40)  # fmt: skip
    out = retrain(pipeline="charlm", profile="quick", overrides=small)
    assert out["decision"] in ("promoted", "kept champion")
    assert out["challenger_version"] == 2 and out["champion_version"] == 1
    assert math.isfinite(out["challenger_score"]) and math.isfinite(out["champion_score"])
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    parent = c.get_run(out["challenger_run"])
    assert parent.data.tags["incoming_files"] == "1"
    base = c.get_run(first["challenger_run"]).data.metrics
    assert parent.data.metrics["train_windows"] > base["train_windows"]
    assert parent.data.metrics["test_windows"] == base["test_windows"]
    champ = c.get_model_version_by_alias("charlm", "champion")
    assert int(champ.version) == (2 if out["challenger_score"] < out["champion_score"] else 1)
