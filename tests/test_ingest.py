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
    with pytest.raises(ValueError, match="seq2seq takes .tsv files"):
        ingest("seq2seq", [good])
    with pytest.raises(ValueError, match="airline takes no new data files"):
        ingest("airline", [good])


def test_arrival_event_names_the_pipeline_and_files(prefect_server):
    files = [{"name": "a.csv", "sha256": "0" * 64, "bytes": 3}]
    event = emit_arrival("word2vec", files)
    assert event.event == EVENT
    assert event.resource.id == resource_id("word2vec") == "seqflow.incoming.word2vec"
    assert event.resource["seqflow.pipeline"] == "word2vec"
    assert event.payload["note"] == "1 new file(s): a.csv"


def test_cli_ingest_sends_the_event_and_exits_without_the_events_worker_warning(
    prefect_server, tmp_path
):
    import subprocess
    import sys

    from tests.resume import environment

    good = drop_tweets(tmp_path / "outside", "batch-001.csv", 1, 51, new=True)
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "ingest", "word2vec", str(good)],
                          env=environment(tmp_path / "data"), capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "batch-001.csv" in proc.stdout and " new rows, " in proc.stdout
    assert "event seqflow.data.arrived " in proc.stdout and "not sent" not in proc.stdout
    assert "EventsWorker" not in proc.stderr and "Still processing" not in proc.stderr
