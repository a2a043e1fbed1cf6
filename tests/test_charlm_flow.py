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
