"""The charlm flow on a slice: eight child runs under one parent, real test perplexity."""

import math

import pytest
from mlflow.tracking import MlflowClient

from flows.charlm import charlm
from flows.config import load_config
from models.charlm import KINDS
from tasks.chars import encode_chars, ingest_book, window_chars
from tasks.engine.tracking import values
from tasks.runtime.loop import Build, Plan
from tasks.runtime.trainer import fit
from tasks.train.charlm import perplexity

SMOKE = ["windows.n_train=2048", "windows.n_test=512", "train.epochs=3", "train.hidden=16"]


def test_charlm_flow_children_metrics_artifacts(prefect_server, data_dir):
    parent = charlm(profile="quick", overrides=SMOKE)
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    p = c.get_run(parent)
    assert p.info.status == "FINISHED" and values(p)["vocab_size"] == 34
    exp = p.info.experiment_id
    children = c.search_runs([exp], f"tags.mlflow.parentRunId = '{parent}'")
    assert sorted(r.data.params["model.kind"] for r in children) == sorted(KINDS)
    for r in children:
        kind = r.data.params["model.kind"]
        hist = c.get_metric_history(r.info.run_id, "test_ppl")
        per_epoch = [h.value for h in hist if h.step < 3]
        assert len(per_epoch) == 3 and all(math.isfinite(v) for v in per_epoch)
        assert per_epoch[-1] < per_epoch[0], kind  # a few epochs lower the test perplexity
        assert values(r)["chars_per_sec"] > 0
    bidir = next(r for r in children if r.data.params["model.kind"] == "lstm_bidir")
    assert "not a next-character model" in bidir.data.tags["mlflow.note.content"]
    artifacts = {a.path for a in c.list_artifacts(parent)}
    assert {"vocab.json", "samples.md", "perplexity.png"} <= artifacts
    champion = c.get_model_version_by_alias("charlm", "champion")
    assert champion.run_id != bidir.info.run_id
    best = c.get_run(champion.run_id)
    assert values(best)["test_ppl"] == min(
        values(r)["test_ppl"] for r in children if r.info.run_id != bidir.info.run_id
    )
    kind = best.data.params["model.kind"]
    samples = open(c.download_artifacts(parent, "samples.md", str(data_dir))).read()
    head = f"# samples: model charlm ({kind}), version {champion.version}, profile quick, test_ppl"
    assert samples.startswith(head) and f"| **{kind}** (registered) |" in samples


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
    base = values(c.get_run(first["challenger_run"]))
    assert values(parent)["train_windows"] > base["train_windows"]
    assert values(parent)["test_windows"] == base["test_windows"]
    champ = c.get_model_version_by_alias("charlm", "champion")
    assert int(champ.version) == (2 if out["challenger_score"] < out["champion_score"] else 1)


# The quick profile's figures from the loop charlm had before the runtime (train_charlm, commit
# d8cedb4), on an x86-64 CPU: the recipe on the runtime gives them bit for bit there; the
# tolerance leaves room for other CPUs' float rounding (the kernels are built -march=native).
BEFORE = {
    "rnn_scratch": ([33.77044953168378, 31.19774522469864, 22.36500684842641],
                    [32.94720086213856, 28.72966073547096, 18.744474656651906]),
    "gru": ([26.727502970226546, 17.77946056144771, 17.042922638225235],
            [18.865928020146537, 17.552689662329275, 17.07466151797195]),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(BEFORE))
def test_recipe_keeps_the_old_loops_figures(data_dir, kind):
    cfg = load_config("charlm", "quick", ["train.device=cpu"])
    book = ingest_book.fn("charlm", cfg.data.dataset, cfg.data.file)
    wins = window_chars.fn("charlm", encode_chars.fn("charlm", book, True), cfg.windows)
    build = Build("tasks.train.charlm:recipe", {"windows": wins.path, "kind": kind,
                                                 "vocab_size": 34, "cfg": cfg.train})  # fmt: skip
    recipe, fitted = fit(build, Plan.of(cfg.train, progress=False))
    train_ppl, test_ppl = BEFORE[kind]
    assert fitted.series("train_ppl") == pytest.approx(train_ppl, rel=1e-4)
    assert fitted.series("test_ppl") == pytest.approx(test_ppl, rel=1e-4)
    assert perplexity(recipe.model, recipe.test, 256, "cpu") == pytest.approx(test_ppl[-1], 1e-4)
    assert fitted.items == 3 * 2048 * 32
