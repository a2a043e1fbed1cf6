"""`seqflow ingest`: verify, copy atomically, emit the arrival event (the end-to-end test runs
the deployment it triggers)."""

import pytest

from flows.cli import main as cli
from flows.ingest import EVENT, emit_arrival, ingest, resource_id
from tests.test_retrain import drop_tweets


def test_ingest_copies_verified_files_and_refuses_bad_ones(data_dir, tmp_path, capsys):
    good = drop_tweets(tmp_path / "outside", "batch-001.csv", 1, 101, new=True)
    bad = drop_tweets(tmp_path / "outside", "batch-002.csv", 1, 11, header=["id", "tweet"])
    folder = data_dir / "incoming" / "word2vec"

    # one bad file: nothing is copied, the error names it
    assert cli(["ingest", "word2vec", str(good), str(bad)]) == 2
    assert "batch-002.csv lacks column" in capsys.readouterr().err
    assert not folder.exists() or not any(folder.iterdir())

    [arrived] = ingest("word2vec", [good])
    assert (folder / "batch-001.csv").read_bytes() == good.read_bytes()
    assert arrived["name"] == "batch-001.csv" and arrived["bytes"] == good.stat().st_size
    assert sorted(p.name for p in folder.iterdir()) == ["batch-001.csv"]  # no temp file left
    assert ingest("word2vec", [good]) == [arrived]  # the same file again: harmless

    good.write_text(good.read_text() + "99999,0,another tweet\n")
    with pytest.raises(FileExistsError, match="exists with other content"):
        ingest("word2vec", [good])
    with pytest.raises(ValueError, match="charlm takes .txt files"):
        ingest("charlm", [good])
    with pytest.raises(ValueError, match="seq2seq takes no new data files"):
        ingest("seq2seq", [good])


def test_arrival_event_names_the_pipeline_and_files(prefect_server):
    files = [{"name": "a.csv", "sha256": "0" * 64, "bytes": 3}]
    event = emit_arrival("word2vec", files)
    assert event.event == EVENT
    assert event.resource.id == resource_id("word2vec") == "seqflow.incoming.word2vec"
    assert event.resource["seqflow.pipeline"] == "word2vec"
    assert event.payload["note"] == "1 new file(s): a.csv"
