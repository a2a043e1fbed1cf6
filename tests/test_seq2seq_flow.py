"""The seq2seq flow on a slice: Prefect test server, MLflow SQLite, registry, translate CLI."""

from mlflow.tracking import MlflowClient

from flows.cli import main as cli
from flows.seq2seq import seq2seq
from tasks.engine.tracking import values

SMOKE = ["data.limit_train=600", "train.epochs=2", "train.max_steps_per_epoch=4",
         "evaluate.examples=5"]  # fmt: skip


def test_seq2seq_flow_logs_registers_and_translates(prefect_server, data_dir, capsys):
    run_id = seq2seq(profile="quick", overrides=SMOKE)
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    r = c.get_run(run_id)
    assert r.info.status == "FINISHED" and r.data.tags["pipeline"] == "seq2seq"
    m = values(r)
    for key in (
        "src_vocab_size",
        "trg_vocab_size",
        "n_params",
        "train_loss",
        "val_loss",
        "train_ppl",
        "val_ppl",
        "test_loss",
        "test_ppl",
        "test_bleu",
        "tokens_per_sec",
        "epoch_tokens_per_sec",
        "final_train_loss",
        "best_val_loss",
        "best_epoch",
        "train_seconds",
    ):
        assert key in m, key
    assert m["train_pairs"] == 600 and 0 <= m["test_bleu"] <= 100
    history = c.get_metric_history(run_id, "val_loss")
    assert [h.step for h in history] == [0, 1]
    assert m["best_val_loss"] == min(h.value for h in history)  # the model evaluated: best.pt
    assert not list((data_dir / "checkpoints" / "seq2seq").glob("*/epoch-*.pt"))  # logged: gone
    artifacts = {a.path for a in c.list_artifacts(run_id)}
    assert {"src_vocab.json", "trg_vocab.json", "translations.md"} <= artifacts
    text = open(c.download_artifacts(run_id, "translations.md", str(data_dir))).read()
    head = "# test translations: model seq2seq, version 1, profile quick, test_bleu "
    assert text.startswith(head)
    assert text.count("\n") == 2 + 2 + 5  # header, blank line, table head, 5 sentences
    assert c.get_model_version_by_alias("seq2seq", "champion").run_id == run_id

    capsys.readouterr()
    assert cli(["translate", "Ein Mann fährt Fahrrad.", "Zwei Hunde."]) == 0
    out = capsys.readouterr()
    assert len(out.out.strip().splitlines()) == 2 and "seq2seq version 1" in out.err
    assert cli(["translate"]) == 2

    from flows.retrain import retrain

    out = retrain(pipeline="seq2seq", profile="quick", overrides=SMOKE)
    assert out["decision"] == "no new data" and out["champion_version"] == 1
