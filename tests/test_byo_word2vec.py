"""word2vec on your own data: an unlabelled corpus (the English side of a local dataset folder
in the Hugging Face layout), a labelled CSV whose columns have other names and string labels,
streaming vs in-memory ingest, and a missing column stopped before any stage. Real Prefect,
real MLflow (SQLite), real Parquet, real (tiny) training."""

import csv
import json

import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from flows.cli import main as cli
from flows.config import load_config
from flows.word2vec import ingest_own, word2vec
from tasks.engine.tracking import values
from tasks.evaluation import NO_LABELS, label_codes
from tasks.sources import SourceError, ingest_source
from tests.conftest import MIRROR
from tests.resume import parent_runs

MULTI30K = MIRROR / "byo" / "multi30k_en_fr"
TWEETS = MIRROR / "tweets_hate_speech" / "train.csv"
TINY = ["train.max_steps_per_epoch=3", "train.epochs=1", "vocab.min_count=2"]


@pytest.fixture
def mlflow_client(data_dir):
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture
def labelled_csv(tmp_path):
    """600 course tweets as `text,sentiment` with labels "hate"/"ok" (every hate tweet of the
    first 6,000 rows, then ok ones)."""
    with TWEETS.open(encoding="utf-8", errors="replace", newline="") as f:
        rows = list(csv.DictReader(f))[:6000]
    hate = [r for r in rows if r["label"] == "1"][:150]
    ok = [r for r in rows if r["label"] == "0"][: 600 - len(hate)]
    path = tmp_path / "labelled.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "sentiment"])
        for r in sorted(hate + ok, key=lambda r: int(r["id"])):
            w.writerow([r["tweet"], "hate" if r["label"] == "1" else "ok"])
    return path


def test_unlabelled_corpus_gives_neighbours_and_loss_and_says_no_f1(
    prefect_server, mlflow_client, data_dir, capsys
):
    sets = [*TINY, "data.text_column=translation.en", "data.label_column=null",
            "data.limit_rows=800"]  # fmt: skip
    argv = ["run", "word2vec", "--profile", "quick", "--data", str(MULTI30K)]
    assert cli(argv + [x for s in sets for x in ("--set", s)]) == 0  # as a user types it
    printed = capsys.readouterr().out
    assert "final_train_loss" in printed and "not checked (your own data" in printed
    (r,) = parent_runs(data_dir, "word2vec")
    run_id = r.info.run_id
    assert r.info.status == "FINISHED"
    m, t = values(r), r.data.tags
    assert "downstream_f1" not in m and t["downstream_f1"] == NO_LABELS
    # 800 train rows (limit_rows) + the folder's own validation (1,014) and test (1,000) rows
    assert m["train_rows"] == 800 + 1014 + 1000
    assert m["final_train_loss"] > 0 and m["vocab_size"] > 100
    assert t["data_source"] == str(MULTI30K) and t["champion.decision"] == "first model: champion"
    neighbours = json.load(open(mlflow_client.download_artifacts(run_id, "neighbors.json",
                                                                 str(data_dir))))  # fmt: skip
    assert neighbours and all(len(v) == 10 for v in neighbours.values())
    assert "label_mapping.json" not in {a.path for a in mlflow_client.list_artifacts(run_id)}
    # the champion was chosen on the metric that exists: the version carries final_train_loss
    mv = mlflow_client.get_model_version("word2vec", "1")
    assert mv.tags["metric"] == "final_train_loss"
    # a second version: score() gives each version's final training loss; lower wins
    second = cli(argv + [x for s in [*sets, "train.seed=7"] for x in ("--set", s)])
    assert second == 0
    r2 = parent_runs(data_dir, "word2vec")[-1]
    t2 = r2.data.tags
    losses = {float(t2["champion.challenger_score"]), float(t2["champion.champion_score"])}
    assert losses == {values(r2)["final_train_loss"], m["final_train_loss"]}
    assert t2["champion.decision"] in ("promoted", "kept champion")


def test_labelled_csv_with_other_column_names_gives_downstream_f1(
    prefect_server, mlflow_client, data_dir, labelled_csv
):
    config = load_config("word2vec", "quick", TINY + [
        f"data.source={labelled_csv}", "data.text_column=text",
        "data.label_column=sentiment", "evaluate.positive_label=hate"])  # fmt: skip
    run_id = word2vec(config=config)
    r = mlflow_client.get_run(run_id)
    m, t = values(r), r.data.tags
    assert r.info.status == "FINISHED"
    assert 0 < m["downstream_f1"] <= 1 and "downstream_f1" not in t
    assert m["train_rows"] == 600  # every split (carved from the one file) in rows.parquet
    assert json.loads(t["label_mapping"]) == {"hate": 0, "ok": 1}
    mapping = mlflow_client.download_artifacts(run_id, "label_mapping.json", str(data_dir))
    assert json.load(open(mapping)) == {"hate": 0, "ok": 1}
    # a second version: the champion decision scores both on this CSV's labelled rows
    config = config.model_copy(update={"train": config.train.model_copy(update={"seed": 7})})
    t2 = mlflow_client.get_run(word2vec(config=config)).data.tags
    scores = [float(t2[f"champion.{k}_score"]) for k in ("challenger", "champion")]
    assert all(0 < x <= 1 for x in scores) and scores[1] == pytest.approx(m["downstream_f1"])


def test_label_codes_sorted_and_positive_label():
    codes, mapping, positive = label_codes(["ok", "hate", "ok", None], "hate")
    assert codes.tolist() == [1, 0, 1, -1] and mapping == {"hate": 0, "ok": 1} and positive == 0
    codes, mapping, positive = label_codes([0, 1, 1, 0], 1)  # the course: unchanged
    assert codes.tolist() == [0, 1, 1, 0] and positive == 1
    assert label_codes(["a", "b", "c"], 1)[2] is None  # three classes: macro F1
    with pytest.raises(ValueError, match="positive_label=1 is not one of the labels"):
        label_codes(["hate", "ok"], 1)


def test_streaming_ingest_writes_the_same_rows(data_dir, monkeypatch, tmp_path, labelled_csv):
    """data.streaming=true (an IterableDataset, read in batches) and false (a Dataset) give
    the same rows.parquet, carved splits included."""
    tables = {}
    for streaming in (False, True):
        monkeypatch.setenv("SEQFLOW_DATA_DIR", str(tmp_path / f"data-{streaming}"))
        for source, extra in [(MULTI30K, ["data.text_column=translation.en",
                                          "data.label_column=null"]),
                              (labelled_csv, ["data.text_column=text",
                                              "data.label_column=sentiment"])]:  # fmt: skip
            config = load_config("word2vec", "quick", [f"data.source={source}",
                                 f"data.streaming={json.dumps(streaming)}", *extra])  # fmt: skip
            rows = ingest_own(config, ingest_source.fn)
            tables[streaming, source.name] = pq.read_table(rows.file("rows.parquet"))
    for name in (MULTI30K.name, labelled_csv.name):
        plain, streamed = tables[False, name], tables[True, name]
        assert plain.num_rows > 500 and plain.equals(streamed)
    assert tables[False, MULTI30K.name].column_names == ["tweet"]
    assert tables[False, labelled_csv.name].column_names == ["tweet", "label"]


def test_missing_text_column_names_the_columns_before_any_stage(
    prefect_server, mlflow_client, data_dir, labelled_csv, capsys
):
    config = load_config("word2vec", "quick", [f"data.source={labelled_csv}",
                                               "data.text_column=tweet"])  # fmt: skip
    with pytest.raises(SourceError, match=r"no column 'tweet'.*columns: text, sentiment"):
        word2vec(config=config)
    assert cli(["run", "word2vec", "--data", str(labelled_csv)]) == 2  # the CLI: one line
    assert "no column 'tweet' (data.text_column); its columns: text, sentiment" in (
        capsys.readouterr().err
    )
    assert not (data_dir / "stages").exists()
    assert mlflow_client.get_experiment_by_name("word2vec") is None


def test_tokenize_language_picks_stemmer_and_stopwords_and_own_data_keeps_accents():
    from tasks.text import tweet_tokenizer

    course = load_config("word2vec", "quick").tokenize
    assert (course.drop_pattern, course.language, course.stopwords) == ("[^a-z@# ]", "english",
                                                                        "english")  # fmt: skip
    own = load_config("word2vec", "quick", ["data.source=x.txt", "tokenize.language=french"])
    assert own.tokenize.stopwords == "french" and own.tokenize.drop_pattern != course.drop_pattern
    words = tweet_tokenizer(**own.tokenize.model_dump())("Les élèves mangent des pommes 42 #été")
    assert words == ["élev", "mangent", "pomm", "#et"]  # French stems, stopwords, accents kept
    bare = load_config("word2vec", "quick", ["data.source=x.txt", "tokenize.language=none"])
    assert tweet_tokenizer(**bare.tokenize.model_dump())("The Élèves") == ["the", "élèves"]
    with pytest.raises(ValueError, match="unknown language 'klingon'"):
        load_config("word2vec", "quick", ["tokenize.language=klingon"])


def test_new_files_of_your_own_format_are_checked_ingested_and_retrained_on(
    prefect_server, mlflow_client, data_dir, labelled_csv, tmp_path, capsys
):
    """`seqflow ingest --data` checks new files by the source's mapping (a wrong column is
    refused, nothing copied; a file of rows already there adds nothing); `retrain --data` trains
    a challenger on the source plus the new rows (train only), then finds no new data."""
    sets = [*TINY, "data.text_column=text", "data.label_column=sentiment",
            "evaluate.positive_label=hate"]  # fmt: skip
    flags = ["--data", str(labelled_csv), *[x for s in sets for x in ("--set", s)]]
    assert cli(["run", "word2vec", "--profile", "quick", *flags]) == 0
    before = parent_runs(data_dir, "word2vec")[-1].data.tags["data_fingerprint"]
    with labelled_csv.open(encoding="utf-8", newline="") as f:
        old = list(csv.reader(f))[1:]
    with TWEETS.open(encoding="utf-8", errors="replace", newline="") as f:
        later = list(csv.DictReader(f))[6000:7000]
    seen, fresh = {t for t, _ in old}, []
    for r in later:  # the tweets repeat some texts: 400 distinct ones the source lacks
        if r["tweet"] not in seen and len(fresh) < 400:
            seen.add(r["tweet"])
            fresh.append(r)
    new = tmp_path / "more.csv"
    with new.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "sentiment"])
        w.writerows(old[:50])  # 50 rows the source has: dropped, counted
        w.writerows([r["tweet"], "hate" if r["label"] == "1" else "ok"] for r in fresh)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("body,sentiment\nsome words,ok\n", encoding="utf-8")
    incoming = data_dir / "incoming" / "word2vec"

    capsys.readouterr()
    assert cli(["ingest", "word2vec", str(wrong), *flags]) == 2
    err = capsys.readouterr().err
    assert "no column 'text'" in err and "body, sentiment" in err, err
    assert not incoming.exists() or not list(incoming.iterdir())  # nothing copied
    same = tmp_path / "same.csv"
    same.write_text("text,sentiment\n" + "".join(f'"{t}",{s}\n' for t, s in old[:5]))
    assert cli(["ingest", "word2vec", str(same), *flags]) == 2
    assert "nothing new" in capsys.readouterr().err

    assert cli(["ingest", "word2vec", str(new), *flags]) == 0
    out = capsys.readouterr().out
    assert "400 new rows, 50 duplicate rows" in out, out
    assert (incoming / "more.csv").read_bytes() == new.read_bytes()

    assert cli(["retrain", "word2vec", *flags]) == 0
    out = capsys.readouterr().out
    challenger = parent_runs(data_dir, "word2vec")[-1]
    assert challenger.data.tags["data_fingerprint"] != before
    assert values(challenger)["duplicate_rows"] == 50
    assert values(challenger)["train_rows"] == 600 + 400  # the source's rows, then the new ones
    assert '"decision"' in out and "no new data" not in out
    assert cli(["retrain", "word2vec", *flags]) == 0
    assert "retrain word2vec: no new data" in capsys.readouterr().out


def test_a_model_of_other_data_is_not_scored_against_the_champion(
    prefect_server, mlflow_client, data_dir, labelled_csv, capsys
):
    """The course's champion and a model of your own CSV are scored on different data: the
    policy does not compare them; the champion stays until --promote says otherwise."""
    course = [*TINY, "data.limit_rows=1500"]
    assert cli(["run", "word2vec", *[x for s in course for x in ("--set", s)]]) == 0
    sets = [*TINY, "data.text_column=text", "data.label_column=sentiment",
            "evaluate.positive_label=hate"]  # fmt: skip
    flags = ["--data", str(labelled_csv), *[x for s in sets for x in ("--set", s)]]
    capsys.readouterr()
    assert cli(["run", "word2vec", *flags]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "version 2 registered; champion stays version 1 (trained on " in line, line
    assert "the champion on the course's data: their scores do not compare" in line, line
    tags = parent_runs(data_dir, "word2vec")[-1].data.tags
    assert tags["data_source"] == str(labelled_csv) and "champion.challenger_score" not in tags
    assert json.loads(tags["data_mapping"]) == {"label_column": "sentiment", "text_column": "text"}
    # the Datasets panel names your file, its digest (the data fingerprint) and mapped columns
    (given,) = parent_runs(data_dir, "word2vec")[-1].inputs.dataset_inputs
    ds = given.dataset
    assert ds.name == labelled_csv.name and ds.digest == tags["data_fingerprint"][:32]
    assert json.loads(ds.source)["uri"] == labelled_csv.as_uri()
    cols = {c["name"]: c["type"] for c in json.loads(ds.schema)["mlflow_colspec"]}
    assert cols == {"text": "string", "sentiment": "string"}, cols
    assert cli(["run", "word2vec", "--promote", *flags]) == 0
    assert "version 3 is now champion (forced by --promote)" in capsys.readouterr().out
