"""seq2seq retraining on new sentence pairs: `seqflow ingest seq2seq` checks a TSV at the door,
retrain trains a challenger on the train split plus the new pairs, scores both models on
test2016 and decides; the same files again are "no new data"; a malformed TSV is refused with
its file and lines; a repacked archive is refused by retrain as `run` refuses it."""

import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from flows.cli import main as cli
from flows.retrain import retrain
from flows.seq2seq import seq2seq
from tasks.data import DataSourceError
from tasks.engine.tracking import values
from tasks.incoming import IncomingError
from tasks.pairs import check_pairs, read_tsv
from tasks.translation import ingest_parallel

SLICE = ["data.limit_train=600", "train.epochs=1", "train.max_steps_per_epoch=3",
         "evaluate.examples=2", "evaluate.max_len=10"]  # fmt: skip


def carve(folder, start: int, n: int, name: str = "new.tsv"):
    """Train pairs start..start+n of the real split as a TSV outside the incoming folder."""
    rows = ingest_parallel.fn("seq2seq", "multi30k", "de", "en", None)
    table = pq.read_table(rows.file("train.parquet")).slice(start, n)
    path = folder / name
    src, trg = table.column("src").to_pylist(), table.column("trg").to_pylist()
    lines = [f"{de}\t{en}" for de, en in zip(src, trg, strict=True)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_read_tsv_names_every_bad_line(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_bytes(b"Ein Hund.\tA dog.\nkein Tab hier\n\tonly English\n\nA\tB\tC\nok\tx\x07y\n")
    faults = []
    pairs = read_tsv(path, faults)
    assert pairs == [(1, "Ein Hund.", "A dog.")]
    got = [(f.line, f.problem) for f in faults]
    assert got == [(2, "0 tabs: a line is one `de<TAB>en` pair"), (3, "the de side is blank"),
                   (4, "a blank line: a line is one `de<TAB>en` pair"),
                   (5, "2 tabs: a line is one `de<TAB>en` pair"),
                   (6, "a control character (only text and one tab)")]  # fmt: skip
    latin = tmp_path / "latin.tsv"
    latin.write_bytes("Ein Hund.\tA dog.\nGrüße\tregards\n".encode("latin-1"))
    faults = []
    assert read_tsv(latin, faults) == [] and faults[0].line == 2 and "UTF-8" in faults[0].problem


def test_retrain_on_new_pairs_decides_then_finds_nothing_new(
    prefect_server, data_dir, tmp_path, capsys, monkeypatch
):
    champion_run = seq2seq(profile="quick", overrides=SLICE)  # version 1: 600 pairs
    incoming = data_dir / "incoming" / "seq2seq"

    seen = carve(tmp_path, 100, 50, "seen.tsv")  # pairs the champion was trained on
    capsys.readouterr()
    assert cli(["ingest", "seq2seq", str(seen), "--set", "data.limit_train=600"]) == 2
    assert "nothing new, nothing copied" in capsys.readouterr().err
    assert not incoming.exists() or not list(incoming.iterdir())

    bad = tmp_path / "bad.tsv"
    bad.write_text("Ein Hund.\tA dog.\nkein Tab hier\nZwei Katzen.\t\n", encoding="utf-8")
    assert cli(["ingest", "seq2seq", str(bad), "--set", "data.limit_train=600"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}, line 2: 0 tabs" in err and f"{bad}, line 3: the en side is blank" in err
    assert not incoming.exists() or not list(incoming.iterdir())  # nothing copied

    new = carve(tmp_path, 600, 500)  # carved from the train split, past the champion's slice
    assert cli(["ingest", "seq2seq", str(new)]) == 2  # every pair is in the whole train split
    assert "every row is already in the train split" in capsys.readouterr().err
    assert cli(["ingest", "seq2seq", str(new), "--set", "data.limit_train=600"]) == 0
    assert "500 new pairs, 0 duplicate pairs" in capsys.readouterr().out
    assert (incoming / "new.tsv").read_bytes() == new.read_bytes()

    out = retrain(pipeline="seq2seq", profile="quick", overrides=SLICE)
    assert out["decision"] in ("promoted", "kept champion")
    assert out["champion_version"] == 1 and out["challenger_version"] == 2
    assert 0 <= out["challenger_score"] <= 100 and 0 <= out["champion_score"] <= 100
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    m = values(c.get_run(out["challenger_run"]))
    assert m["train_pairs"] == 1100 and m["new_pairs"] == 500 and m["duplicate_pairs"] == 0
    assert values(c.get_run(champion_run))["train_pairs"] == 600
    champion = str(c.get_model_version_by_alias("seq2seq", "champion").version)
    assert champion == ("2" if out["decision"] == "promoted" else "1")

    again = retrain(pipeline="seq2seq", profile="quick", overrides=SLICE)
    assert again["decision"] == "no new data"

    # a second copy of the same pairs under another name adds nothing
    shutil.copyfile(new, incoming / "zz-copy.tsv")
    again = retrain(pipeline="seq2seq", profile="quick", overrides=SLICE)
    assert again["decision"] == "no new data"
    assert "incoming zz-copy.tsv adds nothing" in again["duplicate_files"][0]

    # a malformed file dropped straight into the folder stops retrain before any stage
    (incoming / "z-bad.tsv").write_text("nur Deutsch\n", encoding="utf-8")
    with pytest.raises(IncomingError, match="z-bad.tsv, line 1: 0 tabs"):
        retrain(pipeline="seq2seq", profile="quick", overrides=SLICE)
    (incoming / "z-bad.tsv").unlink()

    # a repacked source archive: retrain verifies what it would read, as run does
    mirror = tmp_path / "mirror"
    shutil.copytree(Path(os.environ["SEQFLOW_MIRROR"]) / "multi30k", mirror / "multi30k")
    with open(mirror / "multi30k" / "training.tar.gz", "ab") as f:
        f.write(b"\0")
    monkeypatch.setenv("SEQFLOW_MIRROR", str(mirror))
    with pytest.raises(DataSourceError, match="training.tar.gz"):
        retrain(pipeline="seq2seq", profile="quick", overrides=SLICE)


def test_check_pairs_counts_duplicates_within_and_across_files(data_dir, tmp_path):
    rows = ingest_parallel.fn("seq2seq", "multi30k", "de", "en", 50)
    a = carve(tmp_path, 40, 20, "a.tsv")  # 10 in the first 50 pairs, 10 new
    b = carve(tmp_path, 55, 10, "b.tsv")  # 5 already in a.tsv, 5 new
    report = check_pairs([a, b], rows)
    assert [(f.name, f.rows, f.new, f.duplicates) for f in report.files] == [
        ("a.tsv", 20, 10, 10), ("b.tsv", 10, 5, 5)]  # fmt: skip
    assert report.files[1].duplicate_of == ["incoming a.tsv"]
    assert sum(f.new for f in report.files) == 15 and report.fingerprint
    assert check_pairs([b, a], rows).fingerprint == report.fingerprint  # names/order: no part
